// The generals_rl._core extension module: one bind_* function per area.
#include <pybind11/pybind11.h>

#include "experience_buffer.hpp"
#include "game.hpp"
#include "replay.hpp"
#include "schema.hpp"

namespace py = pybind11;

namespace {

// A column list of the schema as ((name, numpy dtype string, shape), ...), the
// shape a tuple of dimension names per row.
template <size_t N>
py::tuple column_specs(const grl::ColumnSpec (&specs)[N]) {
  py::tuple out(N);
  for (size_t i = 0; i < N; ++i) {
    py::list dims;
    for (auto dim : py::str(specs[i].shape).attr("split")(",")) {
      if (!dim.cast<std::string>().empty()) dims.append(dim);
    }
    out[i] = py::make_tuple(specs[i].name, specs[i].dtype, py::tuple(dims));
  }
  return out;
}

void export_schema(py::module_& m) {
  m.attr("RECORD_COLUMNS") = column_specs(grl::kRecordColumns);
  m.attr("SAMPLE_COLUMNS") = column_specs(grl::kSampleColumns);
  m.attr("STATE_INDEX_COLUMNS") = column_specs(grl::kStateIndexColumns);
  m.attr("STATE_INDEX_SAMPLE_COLUMNS") = column_specs(grl::kStateIndexSampleColumns);
  m.attr("STATE_TABLES") = column_specs(grl::kStateTables);
  m.attr("DECODED_COLUMNS") = column_specs(grl::kDecodedColumns);
  m.attr("DECODED_SAMPLE_COLUMNS") = column_specs(grl::kDecodedSampleColumns);
  py::tuple channels(grl::kObservationChannelNames.size());
  for (size_t i = 0; i < grl::kObservationChannelNames.size(); ++i) channels[i] = grl::kObservationChannelNames[i];
  m.attr("OBSERVATION_CHANNELS") = channels;
  m.attr("OBSTACLES_CHANNEL") = grl::kObstaclesChannel;
  m.attr("MAX_PLAYERS") = grl::kMaxPlayers;
  m.attr("TILE_KIND_SHIFT") = grl::kTileKindShift;
  m.attr("TILE_OWNER_MASK") = grl::kTileOwnerMask;
  m.attr("MAX_COMPACT_ARMY") = grl::kMaxCompactArmy;
  m.attr("TILE_PLAIN") = static_cast<int>(grl::kPlain);
  m.attr("TILE_MOUNTAIN") = static_cast<int>(grl::kMountain);
  m.attr("TILE_CITY") = static_cast<int>(grl::kCity);
  m.attr("TILE_GENERAL") = static_cast<int>(grl::kGeneral);
  m.attr("NEUTRAL") = grl::kNeutral;
  m.attr("FLAG_LEGAL") = static_cast<int>(grl::kLegal);
  m.attr("FLAG_TERMINATED") = static_cast<int>(grl::kTerminated);
  m.attr("FLAG_TRUNCATED") = static_cast<int>(grl::kTruncated);
}

}  // namespace

void bind_config(py::module_& m);
void bind_batches(py::module_& m);
void bind_game(py::module_& m);
void bind_vec_env(py::module_& m);
void bind_buffer(py::module_& m);
void bind_tfrecord(py::module_& m);
void bind_observations(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "generals-rl C++ core: engine, batched environments, experience buffer";
  // The schema and the engine's limits, defined once in C++ (schema.hpp,
  // experience_buffer.hpp, replay.hpp).
  export_schema(m);
  m.attr("MAX_BOARD_SIDE") = grl::kMaxBoardSide;
  m.attr("MAX_ENV_SIDE") = grl::kMaxEnvSide;
  m.attr("MAX_ARMY") = grl::kMaxArmy;
  m.attr("MAX_SEQUENCE") = grl::kMaxSequence;
  m.attr("MAX_IDLE_TICKS") = grl::kMaxIdleTicks;
  m.attr("MAX_SNAPSHOT_CELLS") = grl::kMaxSnapshotCells;
  bind_config(m);  // first: the other areas' signatures name its types and the batches
  bind_batches(m);
  bind_game(m);
  bind_vec_env(m);
  bind_buffer(m);
  bind_tfrecord(m);
  bind_observations(m);
}
