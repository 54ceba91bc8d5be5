// Bindings for compact observations: encoding one board, expanding batches to
// float observations and bool masks (GIL released, on a pool for large batches).
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <thread>

#include "arrays.hpp"
#include "compact_observation.hpp"
#include "thread_pool.hpp"

namespace py = pybind11;
using grl::bindings::as_array;

namespace {

// The module's pool for large expansions, sized to the machine on first use;
// one expansion on it at a time (a concurrent one runs on its caller's thread).
struct ExpandPool {
  std::mutex mutex;
  std::unique_ptr<grl::ThreadPool> pool;
};

ExpandPool& expand_pool() {
  static ExpandPool* shared = new ExpandPool;  // never destroyed: no join at interpreter exit
  return *shared;
}

// Runs fn(pool or nullptr) without the GIL, on the shared pool when it is free.
template <typename Fn>
void with_pool(int num_threads, Fn fn) {
  if (num_threads < 0) {
    throw py::value_error("num_threads: must be 0 (every core) or more, got " + std::to_string(num_threads));
  }
  py::gil_scoped_release release;
  if (num_threads == 1) return fn(nullptr);
  ExpandPool& shared = expand_pool();
  std::unique_lock<std::mutex> lock(shared.mutex, std::try_to_lock);
  if (!lock.owns_lock()) return fn(nullptr);
  const int wanted = num_threads > 0 ? num_threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!shared.pool || shared.pool->size() != wanted) shared.pool = std::make_unique<grl::ThreadPool>(wanted);
  fn(shared.pool.get());
}

// A C-contiguous array of exactly dtype T (no conversion: a copy would cost
// what the expansion saves), named in the error.
template <typename T>
grl::bindings::InputArray<T> exact_array(py::handle value, const char* name, const char* expected) {
  auto arr = py::array::ensure(value);
  if (!arr || !arr.dtype().is(py::dtype::of<T>())) {
    throw py::value_error(std::string(name) + ": expected " + expected + ", got " +
                          (arr ? py::str(arr.dtype()).cast<std::string>() : py::repr(value).cast<std::string>()));
  }
  return grl::bindings::InputArray<T>::ensure(arr);  // the dtype is T: a copy only when misaligned or strided
}

std::vector<py::ssize_t> shape_of(const py::array& arr) {
  return std::vector<py::ssize_t>(arr.shape(), arr.shape() + arr.ndim());
}

// `out` when given (a writeable C-contiguous float32 array of the expected
// shape, checked), else a new array.
py::array_t<float> output_for(py::handle out, const std::vector<py::ssize_t>& shape) {
  if (out.is_none()) return py::array_t<float>(shape);
  auto arr = py::array::ensure(out);
  const std::string expected = "expected a writeable, aligned, C-contiguous float32 array of shape " +
                               py::str(py::tuple(py::cast(shape))).cast<std::string>();
  if (!arr || !arr.dtype().is(py::dtype::of<float>()) || shape_of(arr) != shape ||
      !(arr.flags() & py::array::c_style) || !(arr.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) ||
      !arr.writeable()) {
    throw py::value_error("out: " + expected);
  }
  return py::reinterpret_borrow<py::array_t<float>>(arr);
}

py::array expand(py::handle codes_in, py::handle armies_in, py::handle army_scaling, float army_scale,
                 bool obstacles, int num_threads, py::handle out_in) {
  auto codes = exact_array<uint8_t>(codes_in, "tiles", "uint8 tile codes (..., height, width)");
  if (codes.ndim() < 2) throw py::value_error("tiles: expected an array of shape (..., height, width)");
  const auto [h, w] = grl::bindings::board_shape(codes, codes.ndim() - 2, "tiles");
  auto armies = py::array::ensure(armies_in);
  if (!armies || shape_of(armies) != shape_of(codes)) {
    throw py::value_error("armies: expected the shape of tiles " + py::str(codes.attr("shape")).cast<std::string>() +
                          ", got " + (armies ? py::str(armies.attr("shape")).cast<std::string>() : "no array"));
  }
  grl::ObservationConfig config = grl::bindings::observation_config(army_scaling, army_scale);
  config.obstacles = obstacles;
  const size_t tiles = static_cast<size_t>(h) * w, rows = codes.size() / std::max<size_t>(tiles, 1);
  const int64_t bad = grl::find_invalid_code(codes.data(), codes.size());
  if (bad >= 0) {
    throw py::value_error("tiles: code " + std::to_string(codes.data()[bad]) + " at flat index " + std::to_string(bad) +
                          " is not a tile code (0.." + std::to_string(grl::kTileCodes - 1) + ")");
  }
  auto shape = shape_of(codes);
  shape.insert(shape.end() - 2, config.channels());
  py::array_t<float> out = output_for(out_in, shape);
  float* dst = out.mutable_data();
  if (armies.dtype().is(py::dtype::of<uint16_t>())) {
    if (grl::needs_wide_armies(config)) {
      throw py::value_error("armies: uint16 armies saturate at " + std::to_string(grl::kNarrowArmyMax) +
                            " and expand exactly only up to army_scale " +
                            std::to_string(static_cast<int>(grl::kNarrowArmyScaleMax)) + ", got army_scale " +
                            std::to_string(army_scale) + ": use int32 armies");
    }
    auto a = exact_array<uint16_t>(armies, "armies", "uint16 or int32");
    with_pool(num_threads, [&](grl::ThreadPool* pool) {
      grl::expand_observations(codes.data(), a.data(), rows, tiles, config, dst, pool);
    });
  } else {
    auto a = exact_array<int32_t>(armies, "armies", "uint16 or int32");
    if (a.size() > 0 && a.attr("min")().cast<int64_t>() < 0) {
      throw py::value_error("armies: must be >= 0, got " + py::str(a.attr("min")()).cast<std::string>());
    }
    with_pool(num_threads, [&](grl::ThreadPool* pool) {
      grl::expand_observations(codes.data(), a.data(), rows, tiles, config, dst, pool);
    });
  }
  return out;
}

py::array unpack_masks(py::handle packed_in, int height, int width, int num_threads) {
  grl::check_board_size(height, width, "action_masks");
  auto packed = exact_array<uint8_t>(packed_in, "action_masks", "uint8 packed masks (..., bytes)");
  const size_t tiles = static_cast<size_t>(height) * width, row_bytes = grl::packed_mask_bytes(tiles);
  if (packed.ndim() < 1 || static_cast<size_t>(packed.shape(packed.ndim() - 1)) != row_bytes) {
    throw py::value_error("action_masks: expected a last dimension of " + std::to_string(row_bytes) +
                          " bytes for " + std::to_string(height) + "x" + std::to_string(width) + " boards, got shape " +
                          py::str(packed.attr("shape")).cast<std::string>());
  }
  auto shape = shape_of(packed);
  shape.back() = static_cast<py::ssize_t>(tiles * 4);
  py::array_t<bool> out(shape);
  auto* dst = reinterpret_cast<uint8_t*>(out.mutable_data());
  const size_t rows = packed.size() / row_bytes;
  with_pool(num_threads, [&](grl::ThreadPool* pool) { grl::unpack_action_masks(packed.data(), rows, tiles, dst, pool); });
  return out;
}

// Compact views of rows of state tables (see encode_compact_rows): codes,
// armies and (with masks) packed masks, as numpy arrays.
py::tuple compact_rows(py::handle kind_in, py::handle owner_in, py::handle army_in, py::handle state_index_in,
                       py::handle player_in, bool obstacles, bool wide, bool masks, int num_threads) {
  auto kind = as_array<uint8_t>(kind_in, "state_kind");
  if (kind.ndim() != 3) throw py::value_error("state_kind: expected an array of shape (states, height, width)");
  const auto [h, w] = grl::bindings::board_shape(kind, 1, "state_kind");
  grl::bindings::check_tile_kinds(kind, "state_kind");
  auto owner = as_array<int16_t>(owner_in, "state_owner", kind.size());
  auto army = as_array<int32_t>(army_in, "state_army", kind.size());
  auto state_index = as_array<int32_t>(state_index_in, "state_index");
  auto player = as_array<int32_t>(player_in, "player_id", state_index.size());
  const py::ssize_t rows = state_index.size(), states = kind.shape(0);
  for (py::ssize_t r = 0; r < rows; ++r) {
    if (state_index.data()[r] < 0 || state_index.data()[r] >= states) {
      throw py::value_error("state_index: row " + std::to_string(r) + " refers to state " +
                            std::to_string(state_index.data()[r]) + " of " + std::to_string(states));
    }
    if (player.data()[r] < 0 || player.data()[r] >= grl::kMaxPlayers) {
      throw py::value_error("player_id: row " + std::to_string(r) + ": " + std::to_string(player.data()[r]) +
                            " outside 0.." + std::to_string(grl::kMaxPlayers - 1));
    }
  }
  const std::vector<py::ssize_t> shape{rows, h, w};
  py::array_t<uint8_t> codes(shape);
  py::array armies = wide ? py::array(py::array_t<int32_t>(shape)) : py::array(py::array_t<uint16_t>(shape));
  const auto mask_bytes = static_cast<py::ssize_t>(grl::packed_mask_bytes(static_cast<size_t>(h) * w));
  py::object packed = py::none();
  uint8_t* mask_data = nullptr;
  if (masks) {
    py::array_t<uint8_t> m({rows, mask_bytes});
    mask_data = m.mutable_data();
    packed = m;
  }
  const grl::StateTable table{h, w, kind.data(), owner.data(), army.data()};
  uint8_t* code_data = codes.mutable_data();
  void* army_data = armies.mutable_data();
  with_pool(num_threads, [&](grl::ThreadPool* pool) {
    grl::encode_compact_rows(table, state_index.data(), player.data(), static_cast<size_t>(rows), obstacles, code_data,
                             wide ? nullptr : static_cast<uint16_t*>(army_data),
                             wide ? static_cast<int32_t*>(army_data) : nullptr, mask_data, pool);
  });
  return py::make_tuple(codes, armies, packed);
}

}  // namespace

void bind_observations(py::module_& m) {
  m.attr("TILE_CODES") = grl::kTileCodes;
  m.attr("CODE_FOG") = grl::kCodeFog;
  m.attr("CODE_FOG_OBSTACLE") = grl::kCodeFogObstacle;
  m.attr("FIRST_VISIBLE_CODE") = grl::kFirstVisibleCode;
  m.attr("CHANNEL_CODES") = std::vector<uint32_t>(grl::kChannelCodes.begin(), grl::kChannelCodes.end());
  m.attr("ARMY_CHANNELS") = grl::kArmyChannels;
  m.attr("NARROW_ARMY_MAX") = grl::kNarrowArmyMax;
  m.attr("NARROW_ARMY_SCALE_MAX") = grl::kNarrowArmyScaleMax;

  m.def("expand_observations", &expand, py::arg("tiles"), py::arg("armies"), py::arg("army_scaling") = "linear",
        py::arg("army_scale") = 1000.0f, py::arg("obstacles") = false, py::arg("num_threads") = 0,
        py::arg("out") = py::none());
  m.def("unpack_action_masks", &unpack_masks, py::arg("action_masks"), py::arg("height"), py::arg("width"),
        py::arg("num_threads") = 0);
  m.def("compact_rows", &compact_rows, py::arg("state_kind"), py::arg("state_owner"), py::arg("state_army"),
        py::arg("state_index"), py::arg("player_id"), py::arg("obstacles") = false, py::arg("wide") = false,
        py::arg("masks") = true, py::arg("num_threads") = 0);
  m.def(
      "army_values",
      [](py::handle armies, py::handle army_scaling, float army_scale) {
        auto a = as_array<int64_t>(armies, "armies");
        const grl::ObservationConfig config = grl::bindings::observation_config(army_scaling, army_scale);
        py::array_t<float> out(shape_of(a));
        float* dst = out.mutable_data();
        const int64_t* src = a.data();
        py::gil_scoped_release release;
        for (py::ssize_t i = 0; i < a.size(); ++i) dst[i] = grl::army_value(src[i], config);
        return out;
      },
      py::arg("armies"), py::arg("army_scaling") = "linear", py::arg("army_scale") = 1000.0f);
  m.def(
      "encode_compact",
      [](py::handle kind, py::handle owner, py::handle army, int player, bool obstacles, bool wide,
         const std::vector<int32_t>& teams) {
        const auto args = grl::bindings::board_args(kind, owner, army, player);
        const int h = args.height, w = args.width;
        const std::vector<py::ssize_t> board{h, w};
        py::array_t<uint8_t> codes(board);
        py::array armies = wide ? py::array(py::array_t<int32_t>(board)) : py::array(py::array_t<uint16_t>(board));
        py::array_t<uint8_t> mask(static_cast<py::ssize_t>(grl::packed_mask_bytes(static_cast<size_t>(h) * w)));
        std::vector<uint8_t> scratch(static_cast<size_t>(h) * w * grl::kObservationScratchPerTile);
        if (teams.size() > static_cast<size_t>(grl::kMaxPlayers) ||
            (!teams.empty() && static_cast<size_t>(player) >= teams.size())) {
          throw py::value_error("teams: expected one team per player (player " + std::to_string(player) + " among at most " +
                                std::to_string(grl::kMaxPlayers) + "), got " + std::to_string(teams.size()));
        }
        const std::vector<uint8_t> alive(teams.size(), 1);
        grl::StateView sv = args.view();
        if (!teams.empty()) {
          sv.teams = teams.data();
          sv.alive = alive.data();
          sv.num_players = static_cast<int>(teams.size());
        }
        if (wide) {
          grl::encode_compact(sv, player, obstacles, codes.mutable_data(), static_cast<int32_t*>(armies.mutable_data()),
                              scratch.data());
        } else {
          grl::encode_compact(sv, player, obstacles, codes.mutable_data(),
                              static_cast<uint16_t*>(armies.mutable_data()), scratch.data());
        }
        grl::encode_packed_action_mask(sv, player, mask.mutable_data());
        return py::make_tuple(codes, armies, mask);
      },
      py::arg("kind"), py::arg("owner"), py::arg("army"), py::arg("player"), py::arg("obstacles") = false,
      py::arg("wide") = false, py::arg("teams") = std::vector<int32_t>{});
}
