// Bindings for the settings Python passes to the core: the policy and scaling
// enums (strings naming their values are taken as well) and the config
// structs (MapOptions, RewardConfig, ObservationConfig, VecEnvConfig).
#include <pybind11/stl.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <utility>

#include "arrays.hpp"
#include "converters.hpp"
#include "experience_buffer.hpp"
#include "mapgen.hpp"
#include "vec_env.hpp"

namespace py = pybind11;

namespace {

// The reward terms by their Python names.
constexpr std::pair<const char*, float grl::RewardConfig::*> kRewardTerms[] = {
    {"win", &grl::RewardConfig::win},
    {"loss", &grl::RewardConfig::loss},
    {"city_captured", &grl::RewardConfig::city_captured},
    {"city_lost", &grl::RewardConfig::city_lost},
    {"army_advantage", &grl::RewardConfig::army_advantage},
    {"land_gained", &grl::RewardConfig::land_gained},
    {"general_captured", &grl::RewardConfig::general_captured},
};

grl::RewardConfig reward_config_from(const py::kwargs& terms) {
  grl::RewardConfig r;
  for (auto item : terms) {
    const auto key = item.first.cast<std::string>();
    auto term = std::find_if(std::begin(kRewardTerms), std::end(kRewardTerms),
                             [&](const auto& t) { return key == t.first; });
    if (term == std::end(kRewardTerms)) throw py::value_error("reward: unknown term '" + key + "'");
    if (!py::isinstance<py::float_>(item.second) && !py::isinstance<py::int_>(item.second)) {
      throw py::type_error("reward: term '" + key + "' expects a number, got " +
                           py::repr(item.second).cast<std::string>());
    }
    r.*(term->second) = item.second.cast<float>();
  }
  return r;
}

}  // namespace

py::dict grl::bindings::reward_to_dict(const grl::RewardConfig& r) {
  py::dict d;
  for (const auto& [name, member] : kRewardTerms) d[name] = r.*member;
  return d;
}

void bind_config(py::module_& m) {
  py::enum_<grl::FullPolicy>(m, "FullPolicy", "What producers do when the buffer is full")
      .value("block", grl::FullPolicy::kBlock)
      .value("overwrite", grl::FullPolicy::kOverwrite);
  py::enum_<grl::ObservationConfig::Scale>(m, "ArmyScaling", "How observations scale armies")
      .value("linear", grl::ObservationConfig::kLinear)
      .value("log", grl::ObservationConfig::kLog);
  py::enum_<grl::VecEnvConfig::Format>(m, "ObservationFormat", "The form of a VecEnv's observations")
      .value("float", grl::VecEnvConfig::Format::kFloat)
      .value("compact", grl::VecEnvConfig::Format::kCompact);

  py::class_<grl::MapOptions>(m, "MapOptions")
      .def(py::init<>())
      .def_readwrite("players", &grl::MapOptions::players)
      .def_readwrite("min_side", &grl::MapOptions::min_side)
      .def_readwrite("max_side", &grl::MapOptions::max_side)
      .def_readwrite("mountain_fraction", &grl::MapOptions::mountain_fraction)
      .def_readwrite("cities", &grl::MapOptions::cities)
      .def_readwrite("city_army_min", &grl::MapOptions::city_army_min)
      .def_readwrite("city_army_max", &grl::MapOptions::city_army_max)
      .def_readwrite("min_general_distance", &grl::MapOptions::min_general_distance)
      .def_readwrite("pad_height", &grl::MapOptions::pad_height)
      .def_readwrite("pad_width", &grl::MapOptions::pad_width)
      .def("validate", [](const grl::MapOptions& o) { grl::validate(o); });

  auto reward = py::class_<grl::RewardConfig>(m, "RewardConfig", "Per-player, per-tick reward weights")
                    .def(py::init(&reward_config_from), "Reward weights: the given terms, the others default")
                    .def("to_dict", &grl::bindings::reward_to_dict);
  for (const auto& [name, member] : kRewardTerms) reward.def_readwrite(name, member);

  py::class_<grl::ObservationConfig>(m, "ObservationConfig", "How game states become observation tensors")
      .def(py::init([](py::handle army_scaling, float army_scale, bool obstacles) {
             grl::ObservationConfig config = grl::bindings::observation_config(army_scaling, army_scale);
             config.obstacles = obstacles;
             return config;
           }),
           py::arg("army_scaling") = "linear", py::arg("army_scale") = 1000.0f, py::arg("obstacles") = false)
      .def_readonly("army_scaling", &grl::ObservationConfig::scale)
      .def_readonly("army_scale", &grl::ObservationConfig::army_scale)
      .def_readonly("obstacles", &grl::ObservationConfig::obstacles)
      .def_property_readonly("channels", &grl::ObservationConfig::channels);

  py::class_<grl::VecEnvConfig>(m, "VecEnvConfig", "Settings of a VecEnv, checked when it is built")
      .def(py::init<>())
      .def_readwrite("num_envs", &grl::VecEnvConfig::num_envs)
      .def_readwrite("players", &grl::VecEnvConfig::players)
      .def_readwrite("height", &grl::VecEnvConfig::height)
      .def_readwrite("width", &grl::VecEnvConfig::width)
      .def_readwrite("seed", &grl::VecEnvConfig::seed)
      .def_readwrite("max_ticks", &grl::VecEnvConfig::max_ticks)
      .def_readwrite("num_threads", &grl::VecEnvConfig::num_threads)
      .def_readwrite("teams", &grl::VecEnvConfig::teams)
      .def_readwrite("map", &grl::VecEnvConfig::map)
      .def_readwrite("observation", &grl::VecEnvConfig::observation)
      .def_readwrite("reward", &grl::VecEnvConfig::reward)
      .def_readwrite("observations", &grl::VecEnvConfig::observations)
      .def_readwrite("action_masks", &grl::VecEnvConfig::action_masks)
      .def_property(
          "observation_format", [](const grl::VecEnvConfig& c) { return c.format; },
          [](grl::VecEnvConfig& c, py::handle format) {
            c.format = grl::bindings::enum_arg<grl::VecEnvConfig::Format>(format, "observation_format");
          });
}
