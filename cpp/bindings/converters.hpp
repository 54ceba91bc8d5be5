// Conversions between Python objects and core types used by more than one
// binding file (each is defined next to the binding it came from).
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <vector>

#include "experience_buffer.hpp"
#include "replay.hpp"
#include "rewards.hpp"

namespace grl::bindings {

namespace py = pybind11;

// ---- batches (batch_objects.cpp) ----
// Gives the (empty) columns of a batch of up to `rows` rows on boards of
// `tiles` tiles pooled memory (the n-step observations too with `nstep`).
void take_pooled(RawBatch& batch, size_t rows, size_t tiles);
void take_pooled(DecodedBatch& batch, size_t rows, size_t tiles, bool nstep = false);
// A batch handed to Python (_core.RawBatch, _core.DecodedBatch), whose columns
// are numpy views of its memory; they return to a pool with it.
template <typename Batch>
struct PyBatch {
  Batch batch;
  ~PyBatch();
};
std::unique_ptr<PyBatch<RawBatch>> to_python(RawBatch&& batch);
std::unique_ptr<PyBatch<DecodedBatch>> to_python(DecodedBatch&& batch);
// A raw batch given from Python: the columns of `batch` (attributes named as in
// the schema), converted when no value changes (else ValueError naming the
// column), viewed in place; boards as the state tables hold them.
class RawBatchInput {
 public:
  explicit RawBatchInput(py::handle batch);
  RawBatchView view;
  RawBatch copy() const;  // for the calls that keep or decode the batch

 private:
  std::vector<py::object> arrays_;  // what `view` points into
};

// A RewardConfig's terms by name (bind_config.cpp).
py::dict reward_to_dict(const RewardConfig& reward);

// A replay's (M, 5) moves and (K, 2) AFK events as int32 arrays (bind_game.cpp).
struct ReplayEvents {
  std::vector<ReplayMove> moves;
  std::vector<ReplayAfk> afks;
};
ReplayEvents replay_events_from(py::handle moves, py::handle afks);

}  // namespace grl::bindings
