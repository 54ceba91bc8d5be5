// Bindings for the batched environment and the built-in policies.
#include <pybind11/stl.h>

#include <algorithm>
#include <iterator>
#include <utility>

#include "arrays.hpp"
#include "bots.hpp"
#include "converters.hpp"
#include "observation.hpp"
#include "vec_env.hpp"

namespace py = pybind11;
using grl::bindings::as_array;
using grl::bindings::view;

namespace {

py::dict counters_to_dict(const grl::VecEnvCounters& c, int players) {
  py::dict d;
  d["experiences"] = py::array_t<uint64_t>(players, c.experiences);
  d["illegal_moves"] = py::array_t<uint64_t>(players, c.illegal_moves);
  d["wins"] = py::array_t<uint64_t>(players, c.wins);
  d["games_truncated"] = c.games_truncated;
  d["games_no_winner"] = c.games_no_winner;
  d["reward_buckets"] = py::array_t<uint64_t>(grl::VecEnvCounters::kRewardBuckets, c.reward_buckets);
  d["reward_sum"] = c.reward_sum;
  return d;
}

py::dict output_views(py::object self) {
  auto& e = self.cast<grl::VecEnv&>();
  const py::ssize_t n = e.num_envs(), p = e.players(), h = e.height(), w = e.width();
  py::dict out;
  if (!e.observations.empty()) {
    const py::ssize_t channels = e.config().observation.channels();
    out["observations"] = view(e.observations.data(), {n, p, channels, h, w}, self);
    out["final_observations"] =
        view(e.final_observations.data(), {n, p, channels, h, w}, self);
  }
  if (!e.compact.codes.empty()) {
    out["observations"] = view(e.compact.codes.data(), {n, p, h, w}, self);
    out["final_observations"] = view(e.final_compact.codes.data(), {n, p, h, w}, self);
    if (e.compact.wide) {
      out["armies"] = view(e.compact.wide_armies.data(), {n, p, h, w}, self);
      out["final_armies"] = view(e.final_compact.wide_armies.data(), {n, p, h, w}, self);
    } else {
      out["armies"] = view(e.compact.armies.data(), {n, p, h, w}, self);
      out["final_armies"] = view(e.final_compact.armies.data(), {n, p, h, w}, self);
    }
  }
  if (!e.action_masks.empty() && e.config().format == grl::VecEnvConfig::Format::kCompact) {
    const auto bytes = static_cast<py::ssize_t>(grl::packed_mask_bytes(static_cast<size_t>(h) * w));
    out["action_masks"] = view(e.action_masks.data(), {n, p, bytes}, self);
  } else if (!e.action_masks.empty()) {
    out["action_masks"] = view(reinterpret_cast<const bool*>(e.action_masks.data()), {n, p, h * w * 4}, self);
  }
  out["rewards"] = view(e.rewards.data(), {n, p}, self);
  out["terminated"] = view(reinterpret_cast<const bool*>(e.terminated.data()), {n, p}, self);
  out["truncated"] = view(reinterpret_cast<const bool*>(e.truncated.data()), {n}, self);
  out["illegal"] = view(reinterpret_cast<const bool*>(e.illegal.data()), {n, p}, self);
  out["winner"] = view(e.winner.data(), {n}, self);
  out["tick"] = view(e.tick.data(), {n}, self);
  out["game_id"] = view(e.game_id.data(), {n}, self);
  out["episode_game_id"] = view(e.episode_game_id.data(), {n}, self);
  out["army"] = view(e.army.data(), {n, p}, self);
  out["land"] = view(e.land.data(), {n, p}, self);
  out["alive"] = view(reinterpret_cast<const bool*>(e.alive.data()), {n, p}, self);
  out["episode_done"] = view(reinterpret_cast<const bool*>(e.episode_done.data()), {n}, self);
  out["episode_winner"] = view(e.episode_winner.data(), {n}, self);
  out["episode_length"] = view(e.episode_length.data(), {n}, self);
  out["episode_return"] = view(e.episode_return.data(), {n, p}, self);
  out["episode_illegal_moves"] = view(e.episode_illegal_moves.data(), {n, p}, self);
  out["episode_army"] = view(e.episode_army.data(), {n, p}, self);
  out["episode_land"] = view(e.episode_land.data(), {n, p}, self);
  return out;
}

// A bot call's act_for flags (one per player) and output array (written in place).
std::pair<grl::bindings::InputArray<uint8_t>, py::array_t<int32_t>> policy_args(
    const grl::VecEnv& e, py::handle act_for, py::handle out) {
  return {as_array<uint8_t>(act_for, "players", e.players()),
          grl::bindings::output_array(out, "out", e.num_envs(), e.players())};
}

}  // namespace

void bind_vec_env(py::module_& m) {
  py::class_<grl::VecEnv>(m, "VecEnv")
      .def(py::init([](grl::VecEnvConfig config) {
             py::gil_scoped_release release;
             return new grl::VecEnv(std::move(config));
           }),
           py::arg("config"))
      .def("outputs", &output_views)
      .def(
          "set_reward", [](grl::VecEnv& e, const grl::RewardConfig& reward) { e.set_reward(reward); },
          py::arg("reward"))
      .def("reward", [](const grl::VecEnv& e) { return e.config().reward; })
      .def("set_counting", &grl::VecEnv::set_counting, py::arg("on"))
      .def("counters", [](const grl::VecEnv& e) {
        grl::VecEnvCounters c;
        {
          py::gil_scoped_release release;  // a step may hold the lock for a moment
          c = e.counters();
        }
        return counters_to_dict(c, e.players());
      })
      .def("reset", &grl::VecEnv::reset, py::call_guard<py::gil_scoped_release>())
      .def(
          "step",
          [](grl::VecEnv& e, py::handle actions, bool truncate) {
            auto arr = as_array<int32_t>(actions, "actions", static_cast<py::ssize_t>(e.num_envs()) * e.players());
            py::gil_scoped_release release;
            e.step(arr.data(), truncate);
          },
          py::arg("actions"), py::arg("truncate") = false)
      .def("game_state",
           [](const grl::VecEnv& e, int i) {
             if (i < 0 || i >= e.num_envs()) throw py::index_error("env index out of range");
             const grl::Game& g = e.game(i);
             const std::vector<py::ssize_t> shape{g.height(), g.width()};
             py::dict out;
             out["kind"] = py::array_t<uint8_t>(shape, g.kind());
             out["owner"] = py::array_t<int16_t>(shape, g.owner());
             out["army"] = py::array_t<int32_t>(shape, g.army());
             out["tick"] = g.tick();
             out["generals"] = g.generals();
             return out;
           })
      .def("env_seed", &grl::VecEnv::env_seed, py::arg("index"), py::arg("episode"))
      .def_property_readonly("num_envs", &grl::VecEnv::num_envs)
      .def_property_readonly("players", &grl::VecEnv::players)
      .def_property_readonly("height", &grl::VecEnv::height)
      .def_property_readonly("width", &grl::VecEnv::width)
      .def_property_readonly("num_threads", [](const grl::VecEnv& e) { return e.config().num_threads; });

  // The library's defaults, from the C++ structs: Python reads them from here.
  m.def("vec_env_defaults", [] {
    const grl::VecEnvConfig c;
    py::dict d;
    d["max_ticks"] = c.max_ticks;
    d["reward"] = grl::bindings::reward_to_dict(c.reward);
    return d;
  });
  m.attr("REWARD_BUCKET_BOUNDS") = grl::VecEnvCounters::kRewardBounds;

  m.def(
      "random_policy",
      [](grl::VecEnv& e, uint64_t seed, uint64_t call, py::handle act_for, py::handle out) {
        auto [flags, actions] = policy_args(e, act_for, out);
        py::gil_scoped_release release;
        grl::random_policy(e, seed, call, flags.data(), actions.mutable_data());
      },
      py::arg("env"), py::arg("seed"), py::arg("call"), py::arg("act_for"), py::arg("out"));
  m.def(
      "heuristic_policy",
      [](grl::VecEnv& e, py::handle act_for, py::handle out) {
        auto [flags, actions] = policy_args(e, act_for, out);
        py::gil_scoped_release release;
        grl::heuristic_policy(e, flags.data(), actions.mutable_data());
      },
      py::arg("env"), py::arg("act_for"), py::arg("out"));

  m.def(
      "encode_observation",
      [](py::handle kind, py::handle owner, py::handle army, int player, py::handle army_scaling,
         float army_scale, bool obstacles) {
        const auto board = grl::bindings::board_args(kind, owner, army, player);
        const int h = board.height, w = board.width;
        grl::ObservationConfig config = grl::bindings::observation_config(army_scaling, army_scale);
        config.obstacles = obstacles;
        py::array_t<float> obs({config.channels(), h, w});
        py::array_t<bool> mask(static_cast<py::ssize_t>(h) * w * 4);
        std::vector<uint8_t> scratch(static_cast<size_t>(h) * w * grl::kObservationScratchPerTile);
        const grl::StateView sv = board.view();
        grl::encode_observation(sv, player, config, obs.mutable_data(), scratch.data());
        grl::encode_action_mask(sv, player, reinterpret_cast<uint8_t*>(mask.mutable_data()));
        return py::make_tuple(obs, mask);
      },
      py::arg("kind"), py::arg("owner"), py::arg("army"), py::arg("player"), py::arg("army_scaling") = "linear",
      py::arg("army_scale") = 1000.0f, py::arg("obstacles") = false);
}
