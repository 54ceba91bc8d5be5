// Helpers shared by the binding files: numpy views over C++-owned memory and
// argument checks that raise ValueError naming the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <limits>
#include <string>
#include <type_traits>
#include <vector>

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
  if (src.dtype().is(py::dtype::of<T>()) || src.size() == 0) return;
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

// A C-contiguous array of T, converting when no value changes; checks its number of elements.
template <typename T>
py::array_t<T, py::array::c_style | py::array::forcecast> as_array(py::handle value,
                                                                   const char* name,
                                                                   py::ssize_t expected_size = -1) {
  auto src = py::array::ensure(value);
  if (!src) throw py::value_error(std::string(name) + ": cannot be converted to an array");
  check_convertible<T>(src, name);
  auto arr = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(src);
  if (!arr) throw py::value_error(std::string(name) + ": cannot be converted to an array");
  if (expected_size >= 0 && arr.size() != expected_size) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(expected_size) +
                          " elements, got " + std::to_string(arr.size()));
  }
  return arr;
}

}  // namespace grl::bindings
