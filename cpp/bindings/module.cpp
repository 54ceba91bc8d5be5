// The generals_rl._core extension module: one bind_* function per area.
#include <pybind11/pybind11.h>

#include "experience_buffer.hpp"
#include "game.hpp"
#include "replay.hpp"

namespace py = pybind11;

void bind_game(py::module_& m);
void bind_vec_env(py::module_& m);
void bind_buffer(py::module_& m);
void bind_tfrecord(py::module_& m);
void bind_observations(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "generals-rl C++ core: engine, batched environments, experience buffer";
  // The engine's limits, defined once in C++ (game.hpp, experience_buffer.hpp, replay.hpp).
  m.attr("MAX_BOARD_SIDE") = grl::kMaxBoardSide;
  m.attr("MAX_ENV_SIDE") = grl::kMaxEnvSide;
  m.attr("MAX_ARMY") = grl::kMaxArmy;
  m.attr("MAX_SEQUENCE") = grl::kMaxSequence;
  m.attr("MAX_IDLE_TICKS") = grl::kMaxIdleTicks;
  m.attr("MAX_SNAPSHOT_CELLS") = grl::kMaxSnapshotCells;
  bind_game(m);
  bind_vec_env(m);
  bind_buffer(m);
  bind_tfrecord(m);
  bind_observations(m);
}
