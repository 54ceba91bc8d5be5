// Helpers shared by the binding files: numpy views over C++-owned memory and
// argument checks that raise ValueError naming the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "game.hpp"
#include "observation.hpp"

namespace grl::bindings {

namespace py = pybind11;

// A numpy array viewing `data` (no copy); `owner` keeps the memory alive.
template <typename T>
py::array_t<T> view(const T* data, std::vector<py::ssize_t> shape, py::handle owner,
                    bool writeable = false) {
  py::array_t<T> out(shape, data, owner);
  if (!writeable) out.attr("setflags")(py::arg("write") = false);
  return out;
}

// Converting to T must keep every value: integers must be integers that fit T.
template <typename T>
void check_convertible(const py::array& src, const char* name) {
  // Equal, not the same object: an unpickled array's dtype is a copy of T's.
  if (src.size() == 0 || py::detail::npy_api::get().PyArray_EquivTypes_(src.dtype().ptr(), py::dtype::of<T>().ptr())) {
    return;
  }
  const char kind = src.dtype().kind();
  if constexpr (std::is_integral_v<T>) {
    if (kind != 'b' && kind != 'i' && kind != 'u') {
      throw py::value_error(std::string(name) + ": expected integers, got " +
                            py::str(src.dtype()).cast<std::string>());
    }
    const auto low = src.attr("min")().cast<py::int_>();
    const auto high = src.attr("max")().cast<py::int_>();
    const py::int_ type_min(std::numeric_limits<T>::min()), type_max(std::numeric_limits<T>::max());
    if (low < type_min || high > type_max) {
      throw py::value_error(std::string(name) + ": values " + py::str(low).cast<std::string>() + ".." +
                            py::str(high).cast<std::string>() + " do not fit " +
                            py::str(py::dtype::of<T>()).cast<std::string>());
    }
  } else if (kind != 'b' && kind != 'i' && kind != 'u' && kind != 'f') {
    throw py::value_error(std::string(name) + ": expected numbers, got " + py::str(src.dtype()).cast<std::string>());
  }
}

// An input array as C++ reads it: C-contiguous and aligned. Arrays viewing a
// byte buffer at an odd offset (np.frombuffer) are copied: reading their
// elements in place is undefined behaviour.
template <typename T>
using InputArray = py::array_t<T, py::array::c_style | py::array::forcecast | py::detail::npy_api::NPY_ARRAY_ALIGNED_>;

// An InputArray of T, converting when no value changes; checks its number of elements.
template <typename T>
InputArray<T> as_array(py::handle value, const char* name, py::ssize_t expected_size = -1) {
  auto src = py::array::ensure(value);
  if (!src) throw py::value_error(std::string(name) + ": cannot be converted to an array");
  check_convertible<T>(src, name);
  auto arr = InputArray<T>::ensure(src);
  if (!arr) throw py::value_error(std::string(name) + ": cannot be converted to an array");
  if (expected_size >= 0 && arr.size() != expected_size) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(expected_size) +
                          " elements, got " + std::to_string(arr.size()));
  }
  return arr;
}

// Dimensions `first` and `first + 1` of `arr` as a board's (height, width),
// refused (naming `name`) beyond the board size limit before any int conversion.
inline std::pair<int, int> board_shape(const py::array& arr, int first, const char* name) {
  const auto side = [](py::ssize_t n) { return static_cast<int>(std::min<py::ssize_t>(n, INT_MAX)); };
  const int height = side(arr.shape(first)), width = side(arr.shape(first + 1));
  grl::check_board_size(height, width, name);
  return {height, width};
}

// Every value of `kind` a Tile (observations index tables by it).
inline void check_tile_kinds(const InputArray<uint8_t>& kind, const char* name) {
  // A branch-free maximum first (it vectorizes); the offending index is looked for only on failure.
  const uint8_t* data = kind.data();
  const py::ssize_t n = kind.size();
  uint8_t highest = 0;
  for (py::ssize_t t = 0; t < n; ++t) highest = std::max(highest, data[t]);
  if (highest <= grl::kGeneral) return;
  for (py::ssize_t t = 0; t < n; ++t) {
    if (data[t] > grl::kGeneral) {
      throw py::value_error(std::string(name) + ": " + std::to_string(data[t]) + " at flat index " +
                            std::to_string(t) + " is not a tile kind (0..3)");
    }
  }
}

// One board given as (height, width) kind, owner and army arrays, checked, and a player.
struct BoardArgs {
  InputArray<uint8_t> kind;
  InputArray<int16_t> owner;
  InputArray<int32_t> army;
  int height, width;
  grl::StateView view() const { return {height, width, kind.data(), owner.data(), army.data()}; }
};

inline BoardArgs board_args(py::handle kind, py::handle owner, py::handle army, int player) {
  auto k = as_array<uint8_t>(kind, "kind");
  if (k.ndim() != 2) throw py::value_error("kind: expected a 2-D (height, width) array");
  const auto [h, w] = board_shape(k, 0, "kind");
  check_tile_kinds(k, "kind");
  auto o = as_array<int16_t>(owner, "owner", k.size());
  auto a = as_array<int32_t>(army, "army", k.size());
  // Owners index per-player tables and armies are counts: the C++ encoders trust both.
  for (py::ssize_t t = 0; t < k.size(); ++t) {
    if (o.data()[t] < grl::kNeutral || o.data()[t] >= grl::kMaxPlayers) {
      throw py::value_error("owner: " + std::to_string(o.data()[t]) + " at flat index " + std::to_string(t) +
                            " is not -1 (neutral) or a player 0.." + std::to_string(grl::kMaxPlayers - 1));
    }
    if (a.data()[t] < 0) {
      throw py::value_error("army: " + std::to_string(a.data()[t]) + " at flat index " + std::to_string(t) +
                            " is negative");
    }
  }
  if (player < 0 || player >= grl::kMaxPlayers) {
    throw py::value_error("player: expected 0.." + std::to_string(grl::kMaxPlayers - 1) + ", got " +
                          std::to_string(player));
  }
  return {std::move(k), std::move(o), std::move(a), h, w};
}

// A Python integer within lo..hi as T; raises naming the argument otherwise
// (pybind11's own conversion reports only "incompatible arguments").
template <typename T>
T to_int(py::handle value, const std::string& name, T lo = std::numeric_limits<T>::min(),
         T hi = std::numeric_limits<T>::max()) {
  PyObject* index = PyNumber_Index(value.ptr());
  if (!index) {
    PyErr_Clear();
    throw py::type_error(name + ": expected an integer, got " + py::repr(value).cast<std::string>());
  }
  const auto v = py::reinterpret_steal<py::int_>(index);
  if (v < py::int_(lo) || v > py::int_(hi)) {
    throw py::value_error(name + ": " + py::str(v).cast<std::string>() + " is outside " + std::to_string(lo) + ".." +
                          std::to_string(hi));
  }
  return v.cast<T>();
}

// Every item of an iterable through to_int, named name[i].
template <typename T>
std::vector<T> to_ints(py::handle values, const std::string& name, T lo = std::numeric_limits<T>::min(),
                       T hi = std::numeric_limits<T>::max()) {
  std::vector<T> out;
  for (auto item : py::iter(values)) {
    out.push_back(to_int<T>(item, name + "[" + std::to_string(out.size()) + "]", lo, hi));
  }
  return out;
}

// A timeout in seconds: NaN would reach a float-to-integer conversion
// (undefined behaviour); negative means no waiting, infinity is capped in C++.
inline double timeout_seconds(double value, const char* name) {
  if (std::isnan(value)) throw py::value_error(std::string(name) + ": expected a number of seconds, got nan");
  return value;
}

// A value of the bound enum E given as itself or as the name of one of its
// values; anything else is refused naming the argument and the allowed names.
template <typename E>
E enum_arg(py::handle value, const char* name) {
  if (py::isinstance<E>(value)) return value.cast<E>();
  const py::dict members = py::detail::get_type_handle(typeid(E), true).attr("__members__");
  if (py::isinstance<py::str>(value) && members.contains(value)) return members[value].template cast<E>();
  std::string allowed;
  for (auto item : members) allowed += (allowed.empty() ? "'" : " or '") + item.first.cast<std::string>() + "'";
  throw py::value_error(std::string(name) + ": expected " + allowed + ", got " + py::repr(value).cast<std::string>());
}

// The observation settings every binding takes: army_scaling (an ArmyScaling
// or its name) and a positive army_scale.
inline grl::ObservationConfig observation_config(py::handle army_scaling, float army_scale) {
  grl::ObservationConfig config;
  config.scale = enum_arg<grl::ObservationConfig::Scale>(army_scaling, "army_scaling");
  if (!(army_scale > 0)) throw py::value_error("army_scale: must be positive, got " + std::to_string(army_scale));
  config.army_scale = army_scale;
  return config;
}

inline const char* army_scaling_name(grl::ObservationConfig::Scale scale) {
  return scale == grl::ObservationConfig::kLog ? "log" : "linear";
}

// An int32 (num_envs, players)-style output array written in place: a copy
// (another dtype, a strided view, a read-only array) would silently take the writes.
inline py::array_t<int32_t> output_array(py::handle value, const char* name, py::ssize_t rows, py::ssize_t cols) {
  auto arr = py::array::ensure(value);
  const std::string expected = "expected a writeable, aligned, C-contiguous int32 array of shape (" + std::to_string(rows) +
                               ", " + std::to_string(cols) + ")";
  if (!arr) throw py::type_error(std::string(name) + ": " + expected);
  if (!arr.dtype().is(py::dtype::of<int32_t>()) || arr.ndim() != 2 || arr.shape(0) != rows || arr.shape(1) != cols ||
      !(arr.flags() & py::array::c_style) || !(arr.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) ||
      !arr.writeable()) {
    throw py::value_error(std::string(name) + ": " + expected + ", got " + py::str(arr.dtype()).cast<std::string>() +
                          " " + py::str(py::tuple(arr.attr("shape"))).cast<std::string>() +
                          (arr.writeable() ? "" : " read-only"));
  }
  return py::reinterpret_borrow<py::array_t<int32_t>>(arr);
}

// A new numpy array of `shape` (one dimension, the values' count, by default)
// holding a copy of `values`.
template <typename T>
pybind11::array_t<T> array_of(const std::vector<T>& values, std::vector<pybind11::ssize_t> shape = {}) {
  if (shape.empty()) shape = {static_cast<pybind11::ssize_t>(values.size())};
  pybind11::array_t<T> out(shape);
  if (!values.empty()) std::memcpy(out.mutable_data(), values.data(), values.size() * sizeof(T));
  return out;
}

}  // namespace grl::bindings
