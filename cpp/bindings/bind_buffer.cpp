// Bindings for the experience buffer and its cursors (batches are the objects
// of batch_objects.cpp).
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
#include "recycled_arrays.hpp"
#include "vec_env.hpp"

namespace py = pybind11;
using grl::bindings::as_array;
using grl::bindings::to_int;
using grl::bindings::to_ints;

namespace {

// The rows of one Cursor.read_views (its views are written before their count is known).
constexpr size_t kMaxViewRows = size_t{1} << 16;

// ExperienceBuffer.sample (Batch DecodedBatch) and sample_raw (RawBatch).
template <typename Batch>
auto sample(grl::ExperienceBuffer& b, size_t count, uint64_t seed, bool prioritized, double alpha,
                        double beta, std::vector<int32_t> player_ids, int n_step, double gamma) {
  const grl::SampleOptions options{prioritized, alpha, beta, std::move(player_ids), n_step, gamma};
  Batch out;
  const size_t tiles = static_cast<size_t>(b.height()) * b.width();
  if constexpr (std::is_same_v<Batch, grl::DecodedBatch>) {
    grl::bindings::take_pooled(out, count, tiles, n_step > 0);
  } else {
    grl::bindings::take_pooled(out, count, tiles);
  }
  {
    py::gil_scoped_release release;
    if constexpr (std::is_same_v<Batch, grl::RawBatch>) {
      b.sample_raw(count, seed, out, options);
    } else {
      b.sample(count, seed, out, options);
    }
  }
  return grl::bindings::to_python(std::move(out));
}

// Cursor.read_views: (records as a RawBatch without state tables, view codes
// (views, H, W), view armies (uint8 when every army of the views' states fits,
// else of `army_bytes`), each row's state view, each row's next state view).
py::tuple read_views(grl::Cursor& c, size_t max_items, double timeout, uint64_t end, bool obstacles,
                     int army_bytes) {
  timeout = grl::bindings::timeout_seconds(timeout, "timeout");
  if (max_items > kMaxViewRows) {
    throw py::value_error("max_items: at most " + std::to_string(kMaxViewRows) + " rows a read, got " +
                          std::to_string(max_items));
  }
  if (army_bytes != 2 && army_bytes != 4) {
    throw py::value_error("army_bytes: expected 2 or 4, got " + std::to_string(army_bytes));
  }
  const auto width = army_bytes == 2 ? grl::ArmyWidth::kNarrow : grl::ArmyWidth::kWide;
  const size_t most = 2 * std::max<size_t>(max_items, 1) * c.tiles();  // two views a row at most
  grl::bindings::RecycledOutput codes(most), byte_armies(most), armies(most * grl::army_bytes(width));
  grl::ViewBatch b;
  grl::bindings::take_pooled(b.rows, max_items, c.tiles());
  {
    py::gil_scoped_release release;
    c.read_views(max_items, timeout, end, obstacles, {static_cast<uint8_t*>(codes.data()), armies.data(), width},
                 static_cast<uint8_t*>(byte_armies.data()), b);
  }
  const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(b.views), b.rows.height, b.rows.width};
  py::array view_armies;
  switch (b.army_width) {
    case grl::ArmyWidth::kByte: view_armies = byte_armies.array<uint8_t>(shape); break;
    case grl::ArmyWidth::kNarrow: view_armies = armies.array<uint16_t>(shape); break;
    case grl::ArmyWidth::kWide: view_armies = armies.array<int32_t>(shape); break;
  }
  return py::make_tuple(grl::bindings::to_python(std::move(b.rows)), codes.array<uint8_t>(shape), view_armies,
                        grl::bindings::array_of(b.state_view), grl::bindings::array_of(b.next_state_view));
}

}  // namespace


void bind_buffer(py::module_& m) {
  py::register_exception<grl::BufferFull>(m, "BufferFullError", PyExc_RuntimeError);
  m.attr("MAX_VIEW_ROWS") = kMaxViewRows;
  py::class_<grl::Cursor, std::shared_ptr<grl::Cursor>>(m, "Cursor")
      .def(
          "read_raw",
          [](grl::Cursor& c, size_t max_items, double timeout, bool with_states, uint64_t end) {
            timeout = grl::bindings::timeout_seconds(timeout, "timeout");
            grl::RawBatch b;
            grl::bindings::take_pooled(b, max_items, c.tiles());
            {
              py::gil_scoped_release release;
              c.read_raw(max_items, timeout, b, with_states, end);
            }
            return grl::bindings::to_python(std::move(b));
          },
          py::arg("max_items"), py::arg("timeout"), py::arg("with_states") = true,
          py::arg("end") = std::numeric_limits<uint64_t>::max())
      .def("read_views", &read_views, py::arg("max_items"), py::arg("timeout"), py::arg("end"), py::arg("obstacles"),
           py::arg("army_bytes"))
      .def(
          "read_decoded",
          [](grl::Cursor& c, size_t max_items, double timeout) {
            timeout = grl::bindings::timeout_seconds(timeout, "timeout");
            grl::DecodedBatch b;
            grl::bindings::take_pooled(b, max_items, c.tiles());
            {
              py::gil_scoped_release release;
              c.read_decoded(max_items, timeout, b);
            }
            return grl::bindings::to_python(std::move(b));
          },
          py::arg("max_items"), py::arg("timeout"))
      .def("close", &grl::Cursor::close)
      .def_property_readonly("closed", &grl::Cursor::closed)
      .def_property_readonly("position", &grl::Cursor::position)
      .def_property_readonly("lag", &grl::Cursor::lag)
      .def_property_readonly("total_missed", &grl::Cursor::total_missed);

  auto buffer_class =
      py::class_<grl::ExperienceBuffer, std::shared_ptr<grl::ExperienceBuffer>>(m, "ExperienceBuffer")
      .def(py::init([](int height, int width, uint64_t capacity, py::handle policy, uint64_t state_capacity,
                       py::handle army_scaling, float army_scale) {
             const auto p = grl::bindings::enum_arg<grl::FullPolicy>(policy, "policy");
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
             return grl::bindings::to_python(std::move(out));
           })
      .def(
          "import_resident",
          [](grl::ExperienceBuffer& b, py::handle raw) {
            const grl::RawBatch in = grl::bindings::RawBatchInput(raw).copy();
            py::gil_scoped_release release;
            b.import_resident(in);
          },
          py::arg("raw"))
      .def(
          "append_raw",
          [](grl::ExperienceBuffer& b, py::handle raw) {
            const grl::RawBatch in = grl::bindings::RawBatchInput(raw).copy();
            py::gil_scoped_release release;
            return b.append_raw(in);
          },
          py::arg("raw"))
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
  def_sampler("sample", &sample<grl::DecodedBatch>);
  def_sampler("sample_raw", &sample<grl::RawBatch>);

  m.def(
      "decode_batch",
      [](py::handle raw, int height, int width, py::handle army_scaling, float army_scale) {
        grl::check_board_size(height, width, "batch");
        const grl::bindings::RawBatchInput input(raw);
        if (input.view.height != height || input.view.width != width) {
          throw py::value_error("batch: state tables hold " + std::to_string(input.view.height) + "x" +
                                std::to_string(input.view.width) + " boards, expected " + std::to_string(height) +
                                "x" + std::to_string(width));
        }
        grl::validate_raw_batch(input.view, height, width);
        const grl::RawBatch in = input.copy();
        const grl::ObservationConfig config = grl::bindings::observation_config(army_scaling, army_scale);
        grl::DecodedBatch out;
        {
          py::gil_scoped_release release;
          grl::decode_batch(in, config, out);
        }
        return grl::bindings::to_python(std::move(out));
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
