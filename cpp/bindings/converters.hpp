// Conversions between Python objects and core types used by more than one
// binding file (each is defined next to the binding it came from).
#pragma once

#include <pybind11/pybind11.h>

#include <vector>

#include "experience_buffer.hpp"
#include "replay.hpp"
#include "rewards.hpp"

namespace grl::bindings {

namespace py = pybind11;

// ---- batches (batch_dicts.cpp) ----
// Gives the (empty) columns of a batch of up to `rows` rows on boards of
// `tiles` tiles pooled memory (the n-step observations too with `nstep`).
void take_pooled(RawBatch& batch, size_t rows, size_t tiles);
void take_pooled(DecodedBatch& batch, size_t rows, size_t tiles, bool nstep = false);
// A batch as the dict of numpy columns the Python batch classes take; the
// columns move into the arrays.
py::dict raw_batch_to_dict(RawBatch&& batch);
py::dict decoded_batch_to_dict(DecodedBatch&& batch);
// The raw batch of a dict of columns (converted when no value changes, else
// ValueError naming the column); boards `height` x `width` unless the state
// tables say otherwise (the mismatch is then reported by validation).
RawBatch raw_batch_from_dict(const py::dict& columns, int height, int width);

// A RewardConfig's terms by name (bind_config.cpp).
py::dict reward_to_dict(const RewardConfig& reward);

// A replay's (M, 5) moves and (K, 2) AFK events as int32 arrays (bind_game.cpp).
struct ReplayEvents {
  std::vector<ReplayMove> moves;
  std::vector<ReplayAfk> afks;
};
ReplayEvents replay_events_from(py::handle moves, py::handle afks);

}  // namespace grl::bindings
