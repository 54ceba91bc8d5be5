// Bindings for the experience buffer, its cursors and batches. Batches move
// their C++ vectors into numpy arrays without copying; the memory of arrays
// Python drops serves later reads.
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <tuple>

#include "arrays.hpp"
#include "converters.hpp"
#include "experience_buffer.hpp"
#include "vec_env.hpp"

namespace py = pybind11;
using grl::bindings::as_array;
using grl::bindings::to_int;
using grl::bindings::to_ints;

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
void take_pooled(grl::Column<T>& v, size_t n) {
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

// Pooled memory for a batch of up to `rows` rows: every column a read fills.
void take_pooled(grl::RawBatch& b, size_t rows, size_t tiles) {
  const auto take_rows = [rows, tiles](auto info, auto& column) {
    take_pooled(column, rows * row_elements(info.shape, tiles));
  };
  grl::for_each_record_column(b, take_rows);
  grl::for_each_state_index_column(b, take_rows);
  const size_t boards = std::min<size_t>(rows, 1 << 16);  // about one board a row
  grl::for_each_state_table(b, [boards, tiles](auto, auto& column) { take_pooled(column, boards * tiles); });
}

void take_pooled(grl::DecodedBatch& b, size_t rows, size_t tiles) {
  const auto take_rows = [rows, tiles](auto info, auto& column) {
    take_pooled(column, rows * row_elements(info.shape, tiles));
  };
  grl::for_each_record_column(b, take_rows);
  grl::for_each_decoded_column(b, take_rows);
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

py::dict raw_to_dict(grl::RawBatch&& b) {
  py::dict out;
  const ToNumpy add{out, static_cast<py::ssize_t>(b.size()), b.height, b.width};
  grl::for_each_state_index_column(b, add);
  if (!b.nstep_next_state_index.empty()) grl::for_each_state_index_sample_column(b, add);
  grl::for_each_state_table(b, ToNumpy{out, static_cast<py::ssize_t>(b.states()), b.height, b.width});
  add_record_columns(out, b);
  return out;
}

py::dict decoded_to_dict(grl::DecodedBatch&& b) {
  py::dict out;
  const ToNumpy add{out, static_cast<py::ssize_t>(b.size()), b.height, b.width};
  grl::for_each_decoded_column(b, add);
  if (!b.nstep_next_state.empty()) grl::for_each_decoded_sample_column(b, add);
  add_record_columns(out, b);
  return out;
}

template <typename T>
void column(const py::dict& d, const char* name, grl::Column<T>& out, py::ssize_t n) {
  if (!d.contains(name)) throw py::value_error(std::string("batch: missing column '") + name + "'");
  auto arr = as_array<T>(d[name], name, n);
  out.assign(arr.data(), arr.data() + arr.size());
}

// `height` and `width` are the boards expected; state tables of another board
// size keep theirs, so that the mismatch is reported as such.
grl::RawBatch raw_from_dict(const py::dict& d, int height, int width) {
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

// ExperienceBuffer.sample (Batch DecodedBatch) and sample_raw (RawBatch).
template <typename Batch>
py::dict sample_to_dict(grl::ExperienceBuffer& b, size_t count, uint64_t seed, bool prioritized, double alpha,
                        double beta, std::vector<int32_t> player_ids, int n_step, double gamma) {
  const grl::SampleOptions options{prioritized, alpha, beta, std::move(player_ids), n_step, gamma};
  Batch out;
  const size_t tiles = static_cast<size_t>(b.height()) * b.width();
  take_pooled(out, count, tiles);
  if constexpr (std::is_same_v<Batch, grl::DecodedBatch>) {
    if (n_step > 0) take_pooled(out.nstep_next_state, count * grl::kObservationChannels * tiles);
  }
  {
    py::gil_scoped_release release;
    if constexpr (std::is_same_v<Batch, grl::RawBatch>) {
      b.sample_raw(count, seed, out, options);
    } else {
      b.sample(count, seed, out, options);
    }
  }
  if constexpr (std::is_same_v<Batch, grl::RawBatch>) {
    return raw_to_dict(std::move(out));
  } else {
    return decoded_to_dict(std::move(out));
  }
}

}  // namespace

py::dict grl::bindings::raw_batch_to_dict(grl::RawBatch&& batch) { return raw_to_dict(std::move(batch)); }

void bind_buffer(py::module_& m) {
  py::register_exception<grl::BufferFull>(m, "BufferFullError", PyExc_RuntimeError);
  py::class_<grl::Cursor, std::shared_ptr<grl::Cursor>>(m, "Cursor")
      .def(
          "read_raw",
          [](grl::Cursor& c, size_t max_items, double timeout, bool with_states) {
            timeout = grl::bindings::timeout_seconds(timeout, "timeout");
            grl::RawBatch b;
            take_pooled(b, max_items, c.tiles());
            {
              py::gil_scoped_release release;
              c.read_raw(max_items, timeout, b, with_states);
            }
            return raw_to_dict(std::move(b));
          },
          py::arg("max_items"), py::arg("timeout"), py::arg("with_states") = true)
      .def(
          "read_decoded",
          [](grl::Cursor& c, size_t max_items, double timeout) {
            timeout = grl::bindings::timeout_seconds(timeout, "timeout");
            grl::DecodedBatch b;
            take_pooled(b, max_items, c.tiles());
            {
              py::gil_scoped_release release;
              c.read_decoded(max_items, timeout, b);
            }
            return decoded_to_dict(std::move(b));
          },
          py::arg("max_items"), py::arg("timeout"))
      .def("close", &grl::Cursor::close)
      .def_property_readonly("closed", &grl::Cursor::closed)
      .def_property_readonly("position", &grl::Cursor::position)
      .def_property_readonly("lag", &grl::Cursor::lag)
      .def_property_readonly("total_missed", &grl::Cursor::total_missed);

  auto buffer_class =
      py::class_<grl::ExperienceBuffer, std::shared_ptr<grl::ExperienceBuffer>>(m, "ExperienceBuffer")
      .def(py::init([](int height, int width, uint64_t capacity, const std::string& policy, uint64_t state_capacity,
                       const std::string& army_scaling, float army_scale) {
             grl::FullPolicy p;
             if (policy == "block") p = grl::FullPolicy::kBlock;
             else if (policy == "overwrite") p = grl::FullPolicy::kOverwrite;
             else throw py::value_error("policy: expected 'block' or 'overwrite', got '" + policy + "'");
             const grl::ObservationConfig obs = grl::bindings::observation_config(army_scaling, army_scale);
             return std::make_shared<grl::ExperienceBuffer>(height, width, capacity, p, state_capacity, obs);
           }),
           py::arg("height"), py::arg("width"), py::arg("capacity"), py::arg("policy"), py::arg("state_capacity"),
           py::arg("army_scaling"), py::arg("army_scale"))
      .def(
          "open_cursor",
          [](grl::ExperienceBuffer& b, const std::string& start, py::handle at, py::handle game_ids,
             py::handle player_ids, py::handle min_tick) {
            grl::Cursor::Start s = grl::Cursor::kAt;
            if (start == "oldest") s = grl::Cursor::kOldest;
            else if (start == "newest") s = grl::Cursor::kNewest;
            else if (start != "at") throw py::value_error("start: expected 'oldest', 'newest' or a sequence number");
            grl::CursorFilter filter{to_ints<uint64_t>(game_ids, "game_ids"),
                                     to_ints<int32_t>(player_ids, "player_ids", 0, grl::kMaxPlayers - 1),
                                     to_int<int32_t>(min_tick, "min_tick")};
            return b.open_cursor(s, to_int<uint64_t>(at, "start", 0, grl::kMaxSequence), std::move(filter));
          },
          py::arg("start"), py::arg("at"), py::arg("game_ids"), py::arg("player_ids"), py::arg("min_tick"),
          py::keep_alive<0, 1>())
      .def(
          "update_priorities",
          [](grl::ExperienceBuffer& b, py::handle sequences, py::handle priorities) {
            auto seq = as_array<uint64_t>(sequences, "sequences");
            auto pri = as_array<double>(priorities, "priorities", seq.size());
            const size_t n = static_cast<size_t>(seq.size());
            grl::Column<float> values(n);
            for (size_t i = 0; i < n; ++i) {
              const double p = pri.data()[i];
              if (!(p >= 0) || !(p <= std::numeric_limits<float>::max())) {
                throw py::value_error("priorities: index " + std::to_string(i) + " is " +
                                      py::str(py::float_(p)).cast<std::string>() +
                                      "; priorities must be finite and >= 0");
              }
              values[i] = static_cast<float>(p);
            }
            py::gil_scoped_release release;
            return b.update_priorities(seq.data(), values.data(), n);
          },
          py::arg("sequences"), py::arg("priorities"))
      .def(
          "priorities",
          [](const grl::ExperienceBuffer& b, py::handle sequences) {
            auto seq = as_array<uint64_t>(sequences, "sequences");
            py::array_t<float> out(seq.size());
            {
              py::gil_scoped_release release;
              b.priorities(seq.data(), static_cast<size_t>(seq.size()), out.mutable_data());
            }
            return out;
          },
          py::arg("sequences"))
      .def(
          "restore_priorities",
          [](grl::ExperienceBuffer& b, py::handle sequences, py::handle priorities, float max_priority) {
            auto seq = as_array<uint64_t>(sequences, "sequences");
            auto pri = as_array<float>(priorities, "priorities", seq.size());
            if (!(max_priority >= 0) || std::isinf(max_priority)) {
              throw py::value_error("max_priority: must be finite and >= 0, got " + std::to_string(max_priority));
            }
            for (py::ssize_t i = 0; i < pri.size(); ++i) {
              if (!(pri.data()[i] >= 0) || std::isinf(pri.data()[i])) {
                throw py::value_error("priorities: index " + std::to_string(i) + " is not finite and >= 0");
              }
            }
            py::gil_scoped_release release;
            b.restore_priorities(seq.data(), pri.data(), static_cast<size_t>(seq.size()), max_priority);
          },
          py::arg("sequences"), py::arg("priorities"), py::arg("max_priority"))
      .def("priority_stats",
           [](const grl::ExperienceBuffer& b) {
             const grl::PriorityStats s = b.priority_stats();
             return py::dict(py::arg("enabled") = s.enabled, py::arg("alpha") = s.alpha,
                             py::arg("max_priority") = s.max_priority, py::arg("total") = s.total,
                             py::arg("bytes") = s.bytes, py::arg("updates") = s.updates,
                             py::arg("updates_ignored") = s.updates_ignored,
                             py::arg("producer_sections") = s.producer_sections,
                             py::arg("producer_ns_total") = s.producer_ns_total,
                             py::arg("producer_ns_max") = s.producer_ns_max,
                             py::arg("updater_ns_max") = s.updater_ns_max);
           })
      .def("export_resident",
           [](grl::ExperienceBuffer& b) {
             grl::RawBatch out;
             {
               py::gil_scoped_release release;
               b.export_resident(out);
             }
             return raw_to_dict(std::move(out));
           })
      .def("import_resident",
           [](grl::ExperienceBuffer& b, const py::dict& raw) {
             grl::RawBatch in = raw_from_dict(raw, b.height(), b.width());
             py::gil_scoped_release release;
             b.import_resident(in);
           })
      .def("append_raw",
           [](grl::ExperienceBuffer& b, const py::dict& raw) {
             grl::RawBatch in = raw_from_dict(raw, b.height(), b.width());
             py::gil_scoped_release release;
             return b.append_raw(in);
           })
      .def("stats",
           [](const grl::ExperienceBuffer& b) {
             const grl::BufferStats s = b.stats();
             py::dict out;
             out["capacity"] = s.capacity;
             out["state_capacity"] = s.state_capacity;
             out["resident"] = s.resident;
             out["resident_states"] = s.resident_states;
             out["bytes_used"] = s.bytes_used;
             out["total_appended"] = s.total_appended;
             out["total_overwritten"] = s.total_overwritten;
             out["total_states"] = s.total_states;
             out["cursor_lag"] = s.cursor_lag;
             return out;
           })
      .def_property_readonly("height", &grl::ExperienceBuffer::height)
      .def_property_readonly("width", &grl::ExperienceBuffer::width)
      .def_property_readonly("capacity", &grl::ExperienceBuffer::capacity)
      .def_property_readonly("state_capacity", &grl::ExperienceBuffer::state_capacity)
      .def_property_readonly("head", &grl::ExperienceBuffer::head)
      .def_property_readonly("oldest", &grl::ExperienceBuffer::oldest)
      .def_property_readonly("policy",
                             [](const grl::ExperienceBuffer& b) {
                               return b.policy() == grl::FullPolicy::kBlock ? "block" : "overwrite";
                             })
      .def_property_readonly("army_scaling",
                             [](const grl::ExperienceBuffer& b) {
                               return grl::bindings::army_scaling_name(b.observation_config().scale);
                             })
      .def_property_readonly("army_scale",
                             [](const grl::ExperienceBuffer& b) { return b.observation_config().army_scale; });

  // sample and sample_raw: the same arguments, one batch form each.
  const auto def_sampler = [&buffer_class](const char* name, auto sample) {
    buffer_class.def(name, sample, py::arg("count"), py::arg("seed"), py::arg("prioritized") = false,
                     py::arg("alpha") = 0.6, py::arg("beta") = 0.4, py::arg("player_ids") = std::vector<int32_t>{},
                     py::arg("n_step") = 0, py::arg("gamma") = 0.99);
  };
  def_sampler("sample", &sample_to_dict<grl::DecodedBatch>);
  def_sampler("sample_raw", &sample_to_dict<grl::RawBatch>);

  m.def(
      "decode_batch",
      [](const py::dict& raw, int height, int width, const std::string& army_scaling, float army_scale) {
        grl::check_board_size(height, width, "batch");
        grl::RawBatch in = raw_from_dict(raw, height, width);
        if (in.height != height || in.width != width) {
          throw py::value_error("batch: state tables hold " + std::to_string(in.height) + "x" +
                                std::to_string(in.width) + " boards, expected " + std::to_string(height) + "x" +
                                std::to_string(width));
        }
        grl::validate_raw_batch(in, height, width);
        const grl::ObservationConfig config = grl::bindings::observation_config(army_scaling, army_scale);
        grl::DecodedBatch out;
        {
          py::gil_scoped_release release;
          grl::decode_batch(in, config, out);
        }
        return decoded_to_dict(std::move(out));
      },
      py::arg("raw"), py::arg("height"), py::arg("width"), py::arg("army_scaling") = "linear",
      py::arg("army_scale") = 1000.0f);
  m.def("next_game_id", &grl::next_game_id);
  m.def(
      "set_buffer",
      [](grl::VecEnv& env, std::shared_ptr<grl::ExperienceBuffer> buffer, double timeout) {
        timeout = grl::bindings::timeout_seconds(timeout, "buffer_timeout");
        py::gil_scoped_release release;
        env.set_buffer(std::move(buffer), timeout);
      },
      py::arg("env"), py::arg("buffer"), py::arg("timeout"));
}
