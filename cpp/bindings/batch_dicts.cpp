// Batches to and from dicts of numpy arrays, column by column from the schema
// (schema.hpp). To Python, the C++ vectors move into the arrays without
// copying; the memory of arrays Python drops serves later reads.
#include <pybind11/numpy.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "arrays.hpp"
#include "converters.hpp"

namespace py = pybind11;
using grl::bindings::as_array;
using grl::bindings::to_int;

namespace {


// Column memory of batches Python has dropped, kept for the next reads: a read
// into pages the process already has does not fault fresh ones in (the kernel
// zeroing each) on every call. Bounded: at most 8 vectors and 128 MB per
// element type; small vectors are not kept.
template <typename T>
class ColumnPool {
 public:
  static ColumnPool& get() {
    static auto* pool = new ColumnPool;  // never destroyed: arrays may outlive static destructors
    return *pool;
  }
  void give(grl::Column<T>&& v) {
    const size_t bytes = v.capacity() * sizeof(T);
    if (bytes < (64 << 10)) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.size() >= 8 || held_ + bytes > (size_t{128} << 20)) return;
    held_ += bytes;
    v.clear();
    free_.push_back(std::move(v));
  }
  // Gives `v` (empty) the pooled vector best fitting `n` elements: the
  // smallest holding them, else the largest.
  void take(grl::Column<T>& v, size_t n) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.empty()) return;
    auto fits = [n](const grl::Column<T>& a) { return a.capacity() >= n; };
    auto best = std::min_element(free_.begin(), free_.end(), [&](const auto& a, const auto& b) {
      if (fits(a) != fits(b)) return fits(a);
      return fits(a) ? a.capacity() < b.capacity() : a.capacity() > b.capacity();
    });
    held_ -= best->capacity() * sizeof(T);
    v = std::move(*best);
    free_.erase(best);
  }

 private:
  std::mutex mutex_;
  std::vector<grl::Column<T>> free_;
  size_t held_ = 0;
};

template <typename T>
void take_pooled_column(grl::Column<T>& v, size_t n) {
  ColumnPool<T>::get().take(v, n);
}

// The number of elements of a column per row (per state for the state tables)
// on a height x width board, from the schema's shape ("" is one).
size_t row_elements(const char* shape, size_t tiles) {
  const std::string dims = shape;
  if (dims.empty()) return 1;
  if (dims == "height,width") return tiles;
  if (dims == "channels,height,width") return grl::kObservationChannels * tiles;
  if (dims == "moves") return tiles * 4;
  throw std::logic_error("schema: unknown shape " + dims);
}

// The numpy shape of a column of `rows` rows (states for the state tables).
std::vector<py::ssize_t> numpy_shape(const char* shape, py::ssize_t rows, py::ssize_t height, py::ssize_t width) {
  const std::string dims = shape;
  if (dims.empty()) return {rows};
  if (dims == "height,width") return {rows, height, width};
  if (dims == "channels,height,width") return {rows, grl::kObservationChannels, height, width};
  if (dims == "moves") return {rows, height * width * 4};
  throw std::logic_error("schema: unknown shape " + dims);
}

// A numpy array that takes ownership of `values` (returned to the pool when dropped).
template <typename T, typename Out = T>
py::array to_numpy(grl::Column<T>&& values, std::vector<py::ssize_t> shape) {
  auto* owned = new grl::Column<T>(std::move(values));
  py::capsule free_when_done(owned, [](void* p) {
    auto* vector = static_cast<grl::Column<T>*>(p);
    ColumnPool<T>::get().give(std::move(*vector));
    delete vector;
  });
  return py::array_t<Out>(shape, reinterpret_cast<const Out*>(owned->data()), free_when_done);
}

// A numpy array of a column, moved (no copy), shaped by the schema.
struct ToNumpy {
  py::dict& out;
  py::ssize_t rows, height, width;
  template <typename Info, typename T>
  void operator()(Info info, grl::Column<T>& column) const {
    out[info.name] = to_numpy<T, typename Info::type>(std::move(column), numpy_shape(info.shape, rows, height, width));
  }
};

// The columns both forms carry (sample columns when filled) and the counters.
void add_record_columns(py::dict& out, grl::RecordColumns& b) {
  const ToNumpy add{out, static_cast<py::ssize_t>(b.size()), b.height, b.width};
  grl::for_each_record_column(b, add);
  grl::for_each_sample_column(b, [&add](auto info, auto& column) {
    if (!column.empty()) add(info, column);
  });
  out["missed"] = b.missed;
  out["next_sequence"] = b.next_sequence;
}

template <typename T>
void column(const py::dict& d, const char* name, grl::Column<T>& out, py::ssize_t n) {
  if (!d.contains(name)) throw py::value_error(std::string("batch: missing column '") + name + "'");
  auto arr = as_array<T>(d[name], name, n);
  out.assign(arr.data(), arr.data() + arr.size());
}

}  // namespace

namespace grl::bindings {

// Pooled memory for a batch of up to `rows` rows: every column a read fills.
void take_pooled(grl::RawBatch& b, size_t rows, size_t tiles) {
  const auto take_rows = [rows, tiles](auto info, auto& column) {
    take_pooled_column(column, rows * row_elements(info.shape, tiles));
  };
  grl::for_each_record_column(b, take_rows);
  grl::for_each_state_index_column(b, take_rows);
  const size_t boards = std::min<size_t>(rows, 1 << 16);  // about one board a row
  grl::for_each_state_table(b, [boards, tiles](auto, auto& column) { take_pooled_column(column, boards * tiles); });
}

void take_pooled(grl::DecodedBatch& b, size_t rows, size_t tiles, bool nstep) {
  const auto take_rows = [rows, tiles](auto info, auto& column) {
    take_pooled_column(column, rows * row_elements(info.shape, tiles));
  };
  grl::for_each_record_column(b, take_rows);
  grl::for_each_decoded_column(b, take_rows);
  if (nstep) grl::for_each_decoded_sample_column(b, take_rows);
}

py::dict raw_batch_to_dict(grl::RawBatch&& b) {
  py::dict out;
  const ToNumpy add{out, static_cast<py::ssize_t>(b.size()), b.height, b.width};
  grl::for_each_state_index_column(b, add);
  if (!b.nstep_next_state_index.empty()) grl::for_each_state_index_sample_column(b, add);
  grl::for_each_state_table(b, ToNumpy{out, static_cast<py::ssize_t>(b.states()), b.height, b.width});
  add_record_columns(out, b);
  return out;
}

py::dict decoded_batch_to_dict(grl::DecodedBatch&& b) {
  py::dict out;
  const ToNumpy add{out, static_cast<py::ssize_t>(b.size()), b.height, b.width};
  grl::for_each_decoded_column(b, add);
  if (!b.nstep_next_state.empty()) grl::for_each_decoded_sample_column(b, add);
  add_record_columns(out, b);
  return out;
}

// `height` and `width` are the boards expected; state tables of another board
// size keep theirs, so that the mismatch is reported as such.
grl::RawBatch raw_batch_from_dict(const py::dict& d, int height, int width) {
  grl::RawBatch b;
  b.height = height;
  b.width = width;
  if (d.contains("state_kind")) {
    const auto kind = py::array::ensure(d["state_kind"]);
    if (kind && kind.ndim() == 3) {
      std::tie(b.height, b.width) = grl::bindings::board_shape(kind, 1, "state_kind");
    }
  }
  const py::ssize_t n = as_array<uint64_t>(d["sequence"], "sequence").size();
  const auto read_rows = [&d, n](auto info, auto& values) { column(d, info.name, values, n); };
  grl::for_each_record_column(b, read_rows);
  grl::for_each_state_index_column(b, read_rows);
  grl::for_each_state_table(b, [&d](auto info, auto& values) { column(d, info.name, values, -1); });
  if (d.contains("next_sequence")) b.next_sequence = to_int<uint64_t>(d["next_sequence"], "next_sequence");
  grl::for_each_state_index_sample_column(b, [&](auto info, auto& values) {
    if (d.contains(info.name) && !d[info.name].is_none()) column(d, info.name, values, n);
  });
  return b;
}
}  // namespace grl::bindings
