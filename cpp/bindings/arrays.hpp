// Helpers shared by the binding files: numpy views over C++-owned memory and
// argument checks that raise ValueError naming the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
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

// A C-contiguous array of T, converting when needed; checks its number of elements.
template <typename T>
py::array_t<T, py::array::c_style | py::array::forcecast> as_array(py::handle value,
                                                                   const char* name,
                                                                   py::ssize_t expected_size = -1) {
  auto arr = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(value);
  if (!arr) throw py::value_error(std::string(name) + ": cannot be converted to an array");
  if (expected_size >= 0 && arr.size() != expected_size) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(expected_size) +
                          " elements, got " + std::to_string(arr.size()));
  }
  return arr;
}

}  // namespace grl::bindings
