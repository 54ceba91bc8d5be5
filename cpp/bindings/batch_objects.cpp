// The two batch forms as Python objects (_core.RawBatch, _core.DecodedBatch):
// each owns its C++ batch, and its columns are numpy arrays viewing that
// batch's memory (no copy) that keep it alive. When the last of them goes, the
// column memory returns to a pool that serves later reads. Batches coming from
// Python are read column by column, by the schema's names, from any object
// holding them as attributes (the Python batch classes, or these).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
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

template <typename T>
void give_column(grl::Column<T>& v) {
  ColumnPool<T>::get().give(std::move(v));
}

// The number of elements of a column per row (per state for the state tables)
// on a board of `tiles` tiles, from the schema's shape ("" is one).
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

using PyRawBatch = grl::bindings::PyBatch<grl::RawBatch>;
using PyDecodedBatch = grl::bindings::PyBatch<grl::DecodedBatch>;

// What a column has a row for: an experience, or a state of the state tables.
enum class RowsOf { kExperiences, kStates };

// Binds the column `member` of the batch as a property returning a writeable
// numpy view of it that keeps the batch alive; a column sampling may leave
// empty (`kOptional`) reads as None then.
template <typename Exposed, bool kOptional, typename Holder, typename Base, typename Stored>
void bind_column(py::class_<Holder>& cls, const char* name, const char* shape, grl::Column<Stored> Base::*member,
                 RowsOf rows_of) {
  static_assert(sizeof(Exposed) == sizeof(Stored), "a column is viewed as it is stored");
  using Result = std::conditional_t<kOptional, std::optional<py::array>, py::array>;
  cls.def_property_readonly(name, [member, shape, rows_of](py::object self) -> Result {
    auto& batch = self.cast<Holder&>().batch;
    auto& column = batch.*member;
    if constexpr (kOptional) {
      if (column.empty()) return std::nullopt;
    }
    size_t rows = batch.size();
    if constexpr (std::is_same_v<decltype(batch), grl::RawBatch&>) {
      if (rows_of == RowsOf::kStates) rows = batch.states();
    }
    const auto dims = numpy_shape(shape, static_cast<py::ssize_t>(rows), batch.height, batch.width);
    return grl::bindings::view(reinterpret_cast<const Exposed*>(column.data()), dims, self, true);
  });
}

// Each column of a schema list as a property of `cls` (a class of Batch): a
// row per experience, the same filled only by some samples, a row per state.
#define GRL_BIND_ROWS(name, Stored, Exposed, dtype, shape) \
  bind_column<Exposed, false>(cls, #name, shape, &Batch::name, RowsOf::kExperiences);
#define GRL_BIND_SAMPLED(name, Stored, Exposed, dtype, shape) \
  bind_column<Exposed, true>(cls, #name, shape, &Batch::name, RowsOf::kExperiences);
#define GRL_BIND_STATES(name, Stored, Exposed, dtype, shape) \
  bind_column<Exposed, false>(cls, #name, shape, &Batch::name, RowsOf::kStates);

template <typename Holder>
void bind_records(py::class_<Holder>& cls) {
  using Batch = decltype(Holder::batch);
  GRL_RECORD_COLUMNS(GRL_BIND_ROWS)
  GRL_SAMPLE_COLUMNS(GRL_BIND_SAMPLED)
  cls.def("__len__", [](const Holder& h) { return h.batch.size(); })
      .def_property_readonly("height", [](const Holder& h) { return h.batch.height; })
      .def_property_readonly("width", [](const Holder& h) { return h.batch.width; })
      .def_property_readonly(
          "missed", [](const Holder& h) { return h.batch.missed; },
          "Experiences lost to overwriting before or within this batch.")
      .def_property_readonly(
          "next_sequence", [](const Holder& h) { return h.batch.next_sequence; }, "Where reading resumes.");
}

// The columns only one form has.
void bind_form_columns(py::class_<PyRawBatch>& cls) {
  using Batch = grl::RawBatch;
  GRL_STATE_INDEX_COLUMNS(GRL_BIND_ROWS)
  GRL_STATE_INDEX_SAMPLE_COLUMNS(GRL_BIND_SAMPLED)
  GRL_STATE_TABLES(GRL_BIND_STATES)
}

void bind_form_columns(py::class_<PyDecodedBatch>& cls) {
  using Batch = grl::DecodedBatch;
  GRL_DECODED_COLUMNS(GRL_BIND_ROWS)
  GRL_DECODED_SAMPLE_COLUMNS(GRL_BIND_SAMPLED)
}
#undef GRL_BIND_ROWS
#undef GRL_BIND_SAMPLED
#undef GRL_BIND_STATES

template <typename Holder>
void bind_batch_class(py::module_& m, const char* name, const char* doc) {
  py::class_<Holder> cls(m, name, doc);
  bind_records(cls);
  bind_form_columns(cls);
}

// The InputArray of a column named `name` of `batch` (an attribute), `rows`
// rows (-1: any), converted when no value changes; ValueError names it.
template <typename Exposed>
grl::bindings::InputArray<Exposed> input_column(py::handle batch, const char* name, int ndim, py::ssize_t rows) {
  if (!py::hasattr(batch, name)) throw py::value_error(std::string("batch: missing column '") + name + "'");
  auto arr = as_array<Exposed>(batch.attr(name), name);
  if (arr.ndim() != ndim) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(ndim) + " dimension(s), got " +
                          std::to_string(arr.ndim()));
  }
  if (rows >= 0 && arr.shape(0) != rows) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(rows) + " elements, got " +
                          std::to_string(arr.shape(0)));
  }
  return arr;
}

}  // namespace

namespace grl::bindings {

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

template <typename Batch>
PyBatch<Batch>::~PyBatch() {
  const auto give = [](auto, auto& column) { give_column(column); };
  grl::for_each_record_column(batch, give);
  grl::for_each_sample_column(batch, give);
  if constexpr (std::is_same_v<Batch, grl::RawBatch>) {
    grl::for_each_state_index_column(batch, give);
    grl::for_each_state_index_sample_column(batch, give);
    grl::for_each_state_table(batch, give);
  } else {
    grl::for_each_decoded_column(batch, give);
    grl::for_each_decoded_sample_column(batch, give);
  }
}
template struct PyBatch<grl::RawBatch>;
template struct PyBatch<grl::DecodedBatch>;

// Moved, never copied: the columns keep their memory.
template <typename Batch>
std::unique_ptr<PyBatch<Batch>> owned(Batch&& b) {
  auto out = std::make_unique<PyBatch<Batch>>();
  out->batch = std::move(b);
  return out;
}

std::unique_ptr<PyBatch<grl::RawBatch>> to_python(grl::RawBatch&& b) { return owned(std::move(b)); }
std::unique_ptr<PyBatch<grl::DecodedBatch>> to_python(grl::DecodedBatch&& b) { return owned(std::move(b)); }

RawBatchInput::RawBatchInput(py::handle batch) {
  // Boards as the state tables hold them; one board size for all three is checked in C++.
  auto kind = input_column<uint8_t>(batch, "state_kind", 3, -1);
  const auto [height, width] = board_shape(kind, 1, "state_kind");
  view.height = height;
  view.width = width;
  const py::ssize_t n = input_column<uint64_t>(batch, "sequence", 1, -1).shape(0);
  const auto read = [&](auto info, auto& span, int ndim, py::ssize_t rows) {
    using Exposed = typename decltype(info)::type;
    using Stored = typename std::remove_reference_t<decltype(span)>::element_type;
    auto arr = input_column<Exposed>(batch, info.name, ndim, rows);
    span = {reinterpret_cast<Stored*>(arr.data()), static_cast<size_t>(arr.size())};
    arrays_.push_back(std::move(arr));
  };
  const auto row_column = [&](auto info, auto& span) { read(info, span, 1, n); };
  grl::for_each_record_column(view, row_column);
  grl::for_each_state_index_column(view, row_column);
  grl::for_each_state_table(view, [&](auto info, auto& span) { read(info, span, 3, -1); });
  grl::for_each_state_index_sample_column(view, [&](auto info, auto& span) {
    if (py::hasattr(batch, info.name) && !batch.attr(info.name).is_none()) row_column(info, span);
  });
  for (const char* name : {"state_owner", "state_army"}) {
    const auto table = py::array::ensure(batch.attr(name));
    if (table.shape(1) != height || table.shape(2) != width) {
      throw py::value_error(std::string(name) + ": boards are " + std::to_string(table.shape(1)) + "x" +
                            std::to_string(table.shape(2)) + ", state_kind's " + std::to_string(height) + "x" +
                            std::to_string(width));
    }
  }
  if (py::hasattr(batch, "next_sequence")) {
    view.next_sequence = to_int<uint64_t>(batch.attr("next_sequence"), "next_sequence");
  }
}

grl::RawBatch RawBatchInput::copy() const {
  grl::RawBatch b;
  b.height = view.height;
  b.width = view.width;
  b.next_sequence = view.next_sequence;
#define GRL_COPY_COLUMN(name, Stored, Exposed, dtype, shape) b.name.assign(view.name.begin(), view.name.end());
  GRL_RECORD_COLUMNS(GRL_COPY_COLUMN)
  GRL_STATE_INDEX_COLUMNS(GRL_COPY_COLUMN)
  GRL_STATE_INDEX_SAMPLE_COLUMNS(GRL_COPY_COLUMN)
  GRL_STATE_TABLES(GRL_COPY_COLUMN)
#undef GRL_COPY_COLUMN
  return b;
}

}  // namespace grl::bindings

void bind_batches(py::module_& m) {
  bind_batch_class<PyRawBatch>(m, "RawBatch",
                               "A batch in raw form as C++ made it: the record columns, and state_index and "
                               "next_state_index into the state tables (states, height, width). Its columns are "
                               "numpy arrays viewing its memory.");
  bind_batch_class<PyDecodedBatch>(m, "DecodedBatch",
                                   "A batch in decoded form as C++ made it: the record columns, observation tensors "
                                   "and action masks. Its columns are numpy arrays viewing its memory.");
  m.def(
      "check_raw_batch",
      [](py::handle batch, bool check_values) {
        const grl::bindings::RawBatchInput input(batch);
        py::gil_scoped_release release;
        grl::validate_raw_batch(input.view, input.view.height, input.view.width, check_values);
      },
      py::arg("batch"), py::arg("check_values") = true,
      "ValueError naming the first problem unless batch (any object with the raw form's columns as attributes) is "
      "a well-formed raw batch: columns of one length and convertible dtypes, whole boards in the state tables, "
      "state indices inside them and, with check_values, players, tile kinds, owners and armies in range.");
}
