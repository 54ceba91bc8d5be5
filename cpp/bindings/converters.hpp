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

// A raw batch as the dict of numpy columns RawBatch.from_dict takes (bind_buffer.cpp).
py::dict raw_batch_to_dict(RawBatch&& batch);

// RewardConfig from a dict of its terms, ValueError naming an unknown one (bind_vec_env.cpp).
RewardConfig reward_config_from(const py::dict& terms);

// A replay's (M, 5) moves and (K, 2) AFK events as int32 arrays (bind_game.cpp).
struct ReplayEvents {
  std::vector<ReplayMove> moves;
  std::vector<ReplayAfk> afks;
};
ReplayEvents replay_events_from(py::handle moves, py::handle afks);

}  // namespace grl::bindings
