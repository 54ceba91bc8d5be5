// Bindings for one game, map generation and replays.
#include <pybind11/stl.h>

#include <tuple>

#include "arrays.hpp"
#include "converters.hpp"
#include "game.hpp"
#include "lzstring.hpp"
#include "mapgen.hpp"
#include "replay.hpp"

namespace py = pybind11;
using grl::bindings::as_array;
using grl::bindings::view;

namespace {

py::dict map_to_dict(const grl::MapSpec& spec) {
  const std::vector<py::ssize_t> shape{spec.height, spec.width};
  py::dict out;
  out["kind"] = py::array_t<uint8_t>(shape, spec.kind.data());
  out["owner"] = py::array_t<int16_t>(shape, spec.owner.data());
  out["army"] = py::array_t<int32_t>(shape, spec.army.data());
  out["generals"] = py::array_t<int32_t>(spec.generals.size(), spec.generals.data());
  return out;
}

grl::Game make_game(py::handle kind, py::handle owner, py::handle army, py::handle generals,
                    int max_ticks, bool neutral_city_regrowth, const std::vector<int32_t>& teams) {
  auto kind_arr = as_array<uint8_t>(kind, "kind");
  if (kind_arr.ndim() != 2) throw py::value_error("kind: expected a 2-D (height, width) array");
  grl::MapSpec spec;
  std::tie(spec.height, spec.width) = grl::bindings::board_shape(kind_arr, 0, "kind");
  const py::ssize_t n = kind_arr.size();
  auto owner_arr = as_array<int16_t>(owner, "owner", n);
  auto army_arr = as_array<int32_t>(army, "army", n);
  auto generals_arr = as_array<int32_t>(generals, "generals");
  spec.kind.assign(kind_arr.data(), kind_arr.data() + n);
  spec.owner.assign(owner_arr.data(), owner_arr.data() + n);
  spec.army.assign(army_arr.data(), army_arr.data() + n);
  spec.generals.assign(generals_arr.data(), generals_arr.data() + generals_arr.size());
  spec.teams = teams;
  return grl::Game(std::move(spec), max_ticks, neutral_city_regrowth);
}

py::dict trace_to_dict(const grl::ReplayTrace& trace) {
  const py::ssize_t ticks = static_cast<py::ssize_t>(trace.ticks.size());
  const py::ssize_t players = trace.num_players;
  py::dict out;
  out["end_tick"] = trace.end_tick;
  out["over"] = trace.over;
  out["ticks"] = py::array_t<int32_t>(ticks, trace.ticks.data());
  out["army"] = py::array_t<int64_t>({ticks, players}, trace.army.data());
  out["land"] = py::array_t<int32_t>({ticks, players}, trace.land.data());
  out["alive"] = py::array_t<int32_t>(ticks, trace.alive.data());
  out["death_order"] = trace.death_order;
  py::list snapshots;
  for (size_t i = 0; i < trace.snapshot_ticks.size(); ++i) {
    snapshots.append(py::make_tuple(
        trace.snapshot_ticks[i],
        py::array_t<int16_t>(trace.snapshot_owner[i].size(), trace.snapshot_owner[i].data()),
        py::array_t<int32_t>(trace.snapshot_army[i].size(), trace.snapshot_army[i].data())));
  }
  out["snapshots"] = snapshots;
  return out;
}

}  // namespace

grl::bindings::ReplayEvents grl::bindings::replay_events_from(py::handle moves, py::handle afks) {
  auto move_arr = as_array<int32_t>(moves, "moves");
  auto afk_arr = as_array<int32_t>(afks, "afks");
  if (move_arr.size() % 5 != 0) throw py::value_error("moves: expected rows of 5 integers");
  if (afk_arr.size() % 2 != 0) throw py::value_error("afks: expected rows of 2 integers");
  ReplayEvents events{std::vector<grl::ReplayMove>(move_arr.size() / 5),
                      std::vector<grl::ReplayAfk>(afk_arr.size() / 2)};
  const int32_t* mv = move_arr.data();
  for (size_t i = 0; i < events.moves.size(); ++i, mv += 5) {
    events.moves[i] = {mv[0], mv[1], mv[2], mv[3] != 0, mv[4]};
  }
  for (size_t i = 0; i < events.afks.size(); ++i) {
    events.afks[i] = {afk_arr.data()[2 * i], afk_arr.data()[2 * i + 1]};
  }
  return events;
}

void bind_game(py::module_& m) {
  m.def(
      "generate_map",
      [](const grl::MapOptions& options, uint64_t seed) {
        return map_to_dict(grl::generate_map(options, seed));
      },
      py::arg("options"), py::arg("seed"));

  py::class_<grl::Game>(m, "Game")
      .def(py::init(&make_game), py::arg("kind"), py::arg("owner"), py::arg("army"),
           py::arg("generals"), py::arg("max_ticks") = 0, py::arg("neutral_city_regrowth") = false,
           py::arg("teams") = std::vector<int32_t>{})
      .def_static(
          "generate",
          [](const grl::MapOptions& options, uint64_t seed, int max_ticks, const std::vector<int32_t>& teams) {
            grl::MapSpec spec = grl::generate_map(options, seed);
            spec.teams = teams;
            return grl::Game(std::move(spec), max_ticks);
          },
          py::arg("options"), py::arg("seed"), py::arg("max_ticks") = 0, py::arg("teams") = std::vector<int32_t>{})
      .def(
          "step",
          [](grl::Game& g, py::handle actions) {
            auto arr = as_array<int32_t>(actions, "actions", g.num_players());
            return g.step(arr.data());
          },
          py::arg("actions"))
      .def("apply_move", &grl::Game::apply_move, py::arg("player"), py::arg("start"),
           py::arg("end"), py::arg("half") = false)
      .def("afk", &grl::Game::afk, py::arg("player"))
      .def("advance", &grl::Game::advance)
      .def("move_is_legal", &grl::Game::move_is_legal, py::arg("player"), py::arg("start"),
           py::arg("direction"))
      .def_property_readonly("height", &grl::Game::height)
      .def_property_readonly("width", &grl::Game::width)
      .def_property_readonly("num_players", &grl::Game::num_players)
      .def_property_readonly("tick", &grl::Game::tick)
      .def_property_readonly("max_ticks", &grl::Game::max_ticks)
      .def_property_readonly("over", &grl::Game::over)
      .def_property_readonly("truncated", &grl::Game::truncated)
      .def_property_readonly("done", &grl::Game::done)
      .def_property_readonly("winner", &grl::Game::winner)
      .def_property_readonly("teams", [](const grl::Game& g) { return g.team_game() ? py::cast(g.teams()) : py::none(); })
      .def_property_readonly("death_order", &grl::Game::death_order)
      .def_property_readonly("generals", &grl::Game::generals)
      .def_property_readonly("alive",
                             [](const grl::Game& g) {
                               py::array_t<bool> out(g.num_players());
                               for (int p = 0; p < g.num_players(); ++p) out.mutable_at(p) = g.alive(p);
                               return out;
                             })
      .def_property_readonly("army_per_player",
                             [](const grl::Game& g) {
                               py::array_t<int64_t> out(g.num_players());
                               for (int p = 0; p < g.num_players(); ++p) out.mutable_at(p) = g.army_of(p);
                               return out;
                             })
      .def_property_readonly("land_per_player",
                             [](const grl::Game& g) {
                               py::array_t<int32_t> out(g.num_players());
                               for (int p = 0; p < g.num_players(); ++p) out.mutable_at(p) = g.land_of(p);
                               return out;
                             })
      .def_property_readonly("illegal_moves",
                             [](const grl::Game& g) {
                               py::array_t<int64_t> out(g.num_players());
                               for (int p = 0; p < g.num_players(); ++p) out.mutable_at(p) = g.illegal_moves(p);
                               return out;
                             })
      .def_property_readonly(
          "kind",
          [](py::object self) {
            const auto& g = self.cast<const grl::Game&>();
            return view(g.kind(), {g.height(), g.width()}, self);
          })
      .def_property_readonly(
          "owner",
          [](py::object self) {
            const auto& g = self.cast<const grl::Game&>();
            return view(g.owner(), {g.height(), g.width()}, self);
          })
      .def_property_readonly(
          "army",
          [](py::object self) {
            const auto& g = self.cast<const grl::Game&>();
            return view(g.army(), {g.height(), g.width()}, self);
          })
      .def("visibility", [](const grl::Game& g, int player) {
        if (player < 0 || player >= g.num_players()) {
          throw py::value_error("player: expected 0.." + std::to_string(g.num_players() - 1) +
                                ", got " + std::to_string(player));
        }
        py::array_t<bool> out({g.height(), g.width()});
        g.visibility(player, reinterpret_cast<uint8_t*>(out.mutable_data()));
        return out;
      }, py::arg("player"));

  m.def(
      "run_replay",
      [](grl::Game& game, py::handle moves, py::handle afks, int snapshot_every) {
        const auto events = grl::bindings::replay_events_from(moves, afks);
        grl::ReplayTrace trace;
        {
          py::gil_scoped_release release;
          trace = grl::run_replay(game, events.moves, events.afks, snapshot_every);
        }
        return trace_to_dict(trace);
      },
      py::arg("game"), py::arg("moves"), py::arg("afks"), py::arg("snapshot_every") = 100);

  m.def(
      "replay_experiences",
      [](grl::Game& game, py::handle moves, py::handle afks, int height, int width, uint64_t game_id,
         uint64_t first_sequence, const grl::RewardConfig& reward) {
        const auto events = grl::bindings::replay_events_from(moves, afks);
        grl::ReplayExperienceOptions options{height, width, game_id, first_sequence,
                                             reward};
        grl::RawBatch batch;
        {
          py::gil_scoped_release release;
          grl::replay_experiences(game, events.moves, events.afks, options, batch);
        }
        return grl::bindings::to_python(std::move(batch));
      },
      py::arg("game"), py::arg("moves"), py::arg("afks"), py::arg("height"), py::arg("width"),
      py::arg("game_id"), py::arg("first_sequence"), py::arg("reward"),
      "One experience per alive player per tick of a replay, as a raw batch.");

  m.attr("LZSTRING_MAX_OUTPUT") = grl::kLzStringMaxOutput;
  m.def(
      "lzstring_decompress",
      [](py::buffer data, size_t max_output) {
        const py::buffer_info info = data.request();
        if (info.itemsize != 1 || info.ndim != 1) throw py::value_error("data: expected bytes");
        std::string text;
        try {
          py::gil_scoped_release release;
          text = grl::lzstring_decompress_uint8(static_cast<const uint8_t*>(info.ptr),
                                                static_cast<size_t>(info.size), max_output);
        } catch (const grl::LzStringError& error) {
          throw py::value_error(error.what());
        }
        return py::bytes(text);
      },
      py::arg("data"), py::arg("max_output") = grl::kLzStringMaxOutput,
      "LZString decompressFromUint8Array (the .gior form): the text as UTF-8 bytes.");
}
