// The generals_rl._core extension module: one bind_* function per area.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_game(py::module_& m);
void bind_vec_env(py::module_& m);
void bind_buffer(py::module_& m);
void bind_tfrecord(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "generals-rl C++ core: engine, batched environments, experience buffer";
  bind_game(m);
  bind_vec_env(m);
  bind_buffer(m);
  bind_tfrecord(m);
}
