// Bindings for compact observations: encoding one board, expanding batches to
// float observations and bool masks (GIL released, on a pool for large batches).
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>

#include "arrays.hpp"
#include "recycled_arrays.hpp"
#include "compact_observation.hpp"
#include "thread_pool.hpp"
#include "view_deltas.hpp"

namespace py = pybind11;
using grl::bindings::array_of;
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
  if (armies.dtype().is(py::dtype::of<uint8_t>())) {
    auto a = exact_array<uint8_t>(armies, "armies", "uint8, uint16 or int32");
    with_pool(num_threads, [&](grl::ThreadPool* pool) {
      grl::expand_observations(codes.data(), a.data(), rows, tiles, config, dst, pool);
    });
  } else if (armies.dtype().is(py::dtype::of<uint16_t>())) {
    if (grl::needs_wide_armies(config)) {
      throw py::value_error("armies: uint16 armies saturate at " + std::to_string(grl::kNarrowArmyMax) +
                            " and expand exactly only up to army_scale " +
                            std::to_string(static_cast<int>(grl::kNarrowArmyScaleMax)) + ", got army_scale " +
                            std::to_string(army_scale) + ": use int32 armies");
    }
    auto a = exact_array<uint16_t>(armies, "armies", "uint8, uint16 or int32");
    with_pool(num_threads, [&](grl::ThreadPool* pool) {
      grl::expand_observations(codes.data(), a.data(), rows, tiles, config, dst, pool);
    });
  } else {
    auto a = exact_array<int32_t>(armies, "armies", "uint8, uint16 or int32");
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

// Armies are counts: the encoders trust them to be >= 0 (a negative one would
// wrap in a narrow view and expand to a wrong value).
void check_armies(const grl::bindings::InputArray<int32_t>& army) {
  // A branch-free minimum first (it vectorizes); the offending index is looked for only on failure.
  const int32_t* data = army.data();
  const py::ssize_t n = army.size();
  int32_t lowest = 0;
  for (py::ssize_t t = 0; t < n; ++t) lowest = std::min(lowest, data[t]);
  if (lowest >= 0) return;
  for (py::ssize_t t = 0; t < n; ++t) {
    if (data[t] < 0) {
      throw py::value_error("state_army: " + std::to_string(data[t]) + " at flat index " + std::to_string(t) +
                            " is below the minimum army 0");
    }
  }
}

void check_players(const grl::bindings::InputArray<int32_t>& player, const char* name) {
  for (py::ssize_t r = 0; r < player.size(); ++r) {
    if (player.data()[r] < 0 || player.data()[r] >= grl::kMaxPlayers) {
      throw py::value_error(std::string(name) + ": row " + std::to_string(r) + ": " + std::to_string(player.data()[r]) +
                            " outside 0.." + std::to_string(grl::kMaxPlayers - 1));
    }
  }
}

// An index column of `rows` rows (any number with -1), each index below
// `count`; `what` names what it indexes in the error.
grl::bindings::InputArray<int32_t> index_column(py::handle value, const char* name, py::ssize_t rows,
                                                py::ssize_t count, const char* what) {
  auto index = as_array<int32_t>(value, name, rows);
  for (py::ssize_t r = 0; r < index.size(); ++r) {
    if (index.data()[r] < 0 || index.data()[r] >= count) {
      throw py::value_error(std::string(name) + ": row " + std::to_string(r) + " refers to " + what + " " +
                            std::to_string(index.data()[r]) + " of " + std::to_string(count));
    }
  }
  return index;
}

// A state index column of `rows` rows, each index below `states`.
grl::bindings::InputArray<int32_t> state_indices(py::handle value, const char* name, py::ssize_t rows,
                                                 py::ssize_t states) {
  return index_column(value, name, rows, states, "state");
}

// Rows of state tables to make compact views of (see encode_compact_rows),
// every index checked.
struct ViewRows {
  grl::bindings::InputArray<uint8_t> kind;
  grl::bindings::InputArray<int16_t> owner;
  grl::bindings::InputArray<int32_t> army;
  grl::bindings::InputArray<int32_t> player;
  int height = 0, width = 0;

  ViewRows(py::handle kind_in, py::handle owner_in, py::handle army_in, py::handle player_in,
           const char* player_name = "player_id")
      : kind(as_array<uint8_t>(kind_in, "state_kind")) {
    if (kind.ndim() != 3) throw py::value_error("state_kind: expected an array of shape (states, height, width)");
    std::tie(height, width) = grl::bindings::board_shape(kind, 1, "state_kind");
    grl::bindings::check_tile_kinds(kind, "state_kind");
    owner = as_array<int16_t>(owner_in, "state_owner", kind.size());
    army = as_array<int32_t>(army_in, "state_army", kind.size());
    check_armies(army);
    player = as_array<int32_t>(player_in, player_name);
    check_players(player, player_name);
  }

  py::ssize_t rows() const { return player.size(); }
  size_t tiles() const { return static_cast<size_t>(height) * width; }
  grl::StateTable table() const { return {height, width, kind.data(), owner.data(), army.data()}; }

  // A state index column of these rows, each index checked.
  grl::bindings::InputArray<int32_t> index(py::handle value, const char* name) const {
    return state_indices(value, name, rows(), kind.shape(0));
  }
};

grl::ArmyWidth army_width(bool wide) { return wide ? grl::ArmyWidth::kWide : grl::ArmyWidth::kNarrow; }

grl::ArmyWidth army_width_of_bytes(int bytes) {
  switch (bytes) {
    case 1: return grl::ArmyWidth::kByte;
    case 2: return grl::ArmyWidth::kNarrow;
    case 4: return grl::ArmyWidth::kWide;
    default: throw py::value_error("army_bytes: expected 1, 2 or 4, got " + std::to_string(bytes));
  }
}

// A new array of compact armies of `width`: uint8, uint16 or int32.
py::array army_array(const std::vector<py::ssize_t>& shape, grl::ArmyWidth width, bool recycled = false) {
  switch (width) {
    case grl::ArmyWidth::kByte:
      return recycled ? grl::bindings::recycled_array<uint8_t>(shape) : py::array_t<uint8_t>(shape);
    case grl::ArmyWidth::kNarrow:
      return recycled ? grl::bindings::recycled_array<uint16_t>(shape) : py::array_t<uint16_t>(shape);
    case grl::ArmyWidth::kWide: break;
  }
  return recycled ? grl::bindings::recycled_array<int32_t>(shape) : py::array_t<int32_t>(shape);
}

// Compact views of rows of state tables: codes, armies and (with masks)
// packed masks, as numpy arrays.
py::tuple compact_rows(py::handle kind_in, py::handle owner_in, py::handle army_in, py::handle state_index_in,
                       py::handle player_in, bool obstacles, bool wide, bool masks, int num_threads) {
  const ViewRows view_rows(kind_in, owner_in, army_in, player_in);
  auto state_index = view_rows.index(state_index_in, "state_index");
  const py::ssize_t rows = view_rows.rows(), h = view_rows.height, w = view_rows.width;
  const std::vector<py::ssize_t> shape{rows, h, w};
  py::array_t<uint8_t> codes(shape);
  py::array armies = army_array(shape, army_width(wide));
  const auto mask_bytes = static_cast<py::ssize_t>(grl::packed_mask_bytes(view_rows.tiles()));
  py::object packed = py::none();
  uint8_t* mask_data = nullptr;
  if (masks) {
    py::array_t<uint8_t> m({rows, mask_bytes});
    mask_data = m.mutable_data();
    packed = m;
  }
  uint8_t* code_data = codes.mutable_data();
  void* army_data = armies.mutable_data();
  with_pool(num_threads, [&](grl::ThreadPool* pool) {
    grl::encode_compact_rows(view_rows.table(), state_index.data(), view_rows.player.data(), static_cast<size_t>(rows),
                             obstacles, {code_data, army_data, army_width(wide)}, mask_data, pool);
  });
  return py::make_tuple(codes, armies, packed);
}

// Compact views of experiences (see encode_compact_experiences): state codes,
// state armies, next state codes, next state armies and packed masks of the
// state, as numpy arrays.
py::tuple compact_experiences(py::handle kind_in, py::handle owner_in, py::handle army_in, py::handle state_index_in,
                              py::handle next_state_index_in, py::handle player_in, bool obstacles, bool wide,
                              int num_threads) {
  const ViewRows view_rows(kind_in, owner_in, army_in, player_in);
  auto state_index = view_rows.index(state_index_in, "state_index");
  auto next_state_index = view_rows.index(next_state_index_in, "next_state_index");
  const py::ssize_t rows = view_rows.rows();
  const std::vector<py::ssize_t> shape{rows, view_rows.height, view_rows.width};
  py::array_t<uint8_t> codes(shape), next_codes(shape);
  py::array armies = army_array(shape, army_width(wide)), next_armies = army_array(shape, army_width(wide));
  py::array_t<uint8_t> masks({rows, static_cast<py::ssize_t>(grl::packed_mask_bytes(view_rows.tiles()))});
  const grl::CompactRowsOut state{codes.mutable_data(), armies.mutable_data(), army_width(wide)};
  const grl::CompactRowsOut next{next_codes.mutable_data(), next_armies.mutable_data(), army_width(wide)};
  uint8_t* mask_data = masks.mutable_data();
  with_pool(num_threads, [&](grl::ThreadPool* pool) {
    grl::encode_compact_experiences(view_rows.table(), state_index.data(), next_state_index.data(),
                                    view_rows.player.data(), static_cast<size_t>(rows), obstacles, state, next,
                                    mask_data, pool);
  });
  return py::make_tuple(codes, armies, next_codes, next_armies, masks);
}

// The distinct views of experiences (see plan_experience_views): per row the
// view of its next state, and per view its state and player, as numpy arrays.
py::tuple compact_view_plan(py::handle state_index_in, py::handle next_state_index_in, py::handle player_in,
                            py::ssize_t states) {
  auto player = as_array<int32_t>(player_in, "player_id");
  check_players(player, "player_id");
  const py::ssize_t rows = player.size();
  auto state_index = state_indices(state_index_in, "state_index", rows, states);
  auto next_state_index = state_indices(next_state_index_in, "next_state_index", rows, states);
  grl::ExperienceViews plan;
  {
    py::gil_scoped_release release;
    plan = grl::plan_experience_views(state_index.data(), next_state_index.data(), player.data(),
                                      static_cast<size_t>(rows));
  }
  return py::make_tuple(array_of(plan.next_state_view), array_of(plan.view_state), array_of(plan.view_player));
}

// Views of state tables (a state and a player each) as the compact stream
// sends them: codes, armies of `army_bytes`, and the packed action masks of
// the first `masked_views`.
struct StreamViews {
  ViewRows views;
  grl::bindings::InputArray<int32_t> state;
  size_t masked;
  grl::ArmyWidth width;

  StreamViews(py::handle kind, py::handle owner, py::handle army, py::handle view_state, py::handle view_player,
              py::ssize_t masked_views, int army_bytes)
      : views(kind, owner, army, view_player, "view_player"),
        state(views.index(view_state, "view_state")),
        masked(static_cast<size_t>(masked_views)),
        width(army_width_of_bytes(army_bytes)) {
    if (masked_views < 0 || masked_views > views.rows()) {
      throw py::value_error("masked_views: expected 0.." + std::to_string(views.rows()) + ", got " +
                            std::to_string(masked_views));
    }
  }

  size_t count() const { return static_cast<size_t>(views.rows()); }
  size_t codes_bytes() const { return count() * views.tiles(); }
  size_t armies_bytes() const { return codes_bytes() * grl::army_bytes(width); }
  size_t mask_bytes() const { return masked * grl::packed_mask_bytes(views.tiles()); }

  // Writes codes, armies and masks (GIL released; any alignment).
  void write(uint8_t* codes, void* army_data, uint8_t* masks, bool obstacles, grl::ThreadPool* pool) const {
    auto* armies = static_cast<uint8_t*>(army_data);
    const grl::StateTable table = views.table();
    const int32_t* player = views.player.data();
    grl::encode_compact_rows(table, state.data(), player, masked, obstacles, {codes, armies, width}, masks, pool);
    const size_t tiles = views.tiles(), rest = count() - masked;
    grl::encode_compact_rows(table, state.data() + masked, player + masked, rest, obstacles,
                             {codes + masked * tiles, armies + masked * tiles * grl::army_bytes(width), width}, nullptr,
                             pool);
  }
};

// StreamViews as numpy arrays: codes (views, H, W), armies, packed masks.
py::tuple compact_views(py::handle kind_in, py::handle owner_in, py::handle army_in, py::handle view_state_in,
                        py::handle view_player_in, py::ssize_t masked_views, bool obstacles, int army_bytes,
                        int num_threads) {
  const StreamViews views(kind_in, owner_in, army_in, view_state_in, view_player_in, masked_views, army_bytes);
  const auto count = static_cast<py::ssize_t>(views.count());
  const std::vector<py::ssize_t> shape{count, views.views.height, views.views.width};
  // The stream makes these for every batch: over recycled memory.
  py::array_t<uint8_t> codes = grl::bindings::recycled_array<uint8_t>(shape);
  py::array armies = army_array(shape, views.width, true);
  py::array_t<uint8_t> masks = grl::bindings::recycled_array<uint8_t>(
      {static_cast<py::ssize_t>(views.masked), static_cast<py::ssize_t>(grl::packed_mask_bytes(views.views.tiles()))});
  uint8_t* code_data = codes.mutable_data();
  void* army_data = armies.mutable_data();
  uint8_t* mask_data = masks.mutable_data();
  with_pool(num_threads,
            [&](grl::ThreadPool* pool) { views.write(code_data, army_data, mask_data, obstacles, pool); });
  return py::make_tuple(codes, armies, masks);
}

// Calls fn(T{}) with T the army type of `armies` (uint8, uint16 or int32).
template <typename Fn>
auto with_army_type(const py::array& armies, const char* name, Fn fn) {
  if (armies.dtype().is(py::dtype::of<uint8_t>())) return fn(uint8_t{});
  if (armies.dtype().is(py::dtype::of<uint16_t>())) return fn(uint16_t{});
  if (armies.dtype().is(py::dtype::of<int32_t>())) return fn(int32_t{});
  throw py::value_error(std::string(name) + ": expected uint8, uint16 or int32, got " +
                        py::str(armies.dtype()).cast<std::string>());
}

// Views (views, H, W): uint8 codes and armies of the same shape.
std::pair<grl::bindings::InputArray<uint8_t>, py::array> view_arrays(py::handle tiles_in, py::handle armies_in) {
  auto tiles = exact_array<uint8_t>(tiles_in, "tiles", "uint8 tile codes (views, height, width)");
  if (tiles.ndim() != 3) throw py::value_error("tiles: expected an array of shape (views, height, width)");
  auto armies = py::array::ensure(armies_in);
  if (!armies || shape_of(armies) != shape_of(tiles)) {
    throw py::value_error("armies: expected the shape of tiles " + py::str(tiles.attr("shape")).cast<std::string>() +
                          ", got " + (armies ? py::str(armies.attr("shape")).cast<std::string>() : "no array"));
  }
  return {tiles, armies};
}

// A view index column: int32, each index below `views`.
grl::bindings::InputArray<int32_t> view_indices(py::handle value, const char* name, py::ssize_t views,
                                                py::ssize_t rows = -1) {
  return index_column(value, name, rows, views, "view");
}

// Views coded as keyframes and deltas (grl::encode_view_deltas), each view
// against the earlier view of a row's state/next state link:
// (view_base, delta_end, key_tiles, key_armies, change_tile, change_code, change_army).
py::tuple view_deltas(py::handle tiles_in, py::handle armies_in, py::handle state_view_in,
                      py::handle next_state_view_in) {
  auto [tiles, armies_any] = view_arrays(tiles_in, armies_in);
  const py::ssize_t views = tiles.shape(0), h = tiles.shape(1), w = tiles.shape(2);
  auto state_view = view_indices(state_view_in, "state_view", views);
  auto next_state_view = view_indices(next_state_view_in, "next_state_view", views, state_view.size());
  const size_t board = static_cast<size_t>(h) * static_cast<size_t>(w);
  return with_army_type(armies_any, "armies", [&](auto army) -> py::tuple {
    using Army = decltype(army);
    auto armies = exact_array<Army>(armies_any, "armies", "uint8, uint16 or int32");
    std::vector<int32_t> base;
    grl::ViewDeltas<Army> deltas;
    {
      py::gil_scoped_release release;
      base = grl::choose_view_bases(state_view.data(), next_state_view.data(), static_cast<size_t>(state_view.size()),
                                    static_cast<size_t>(views));
      grl::encode_view_deltas(tiles.data(), armies.data(), static_cast<size_t>(views), board, base.data(), deltas);
    }
    const auto keyframes = static_cast<py::ssize_t>(deltas.key_tiles.size() / std::max<size_t>(board, 1));
    const auto changes = static_cast<py::ssize_t>(deltas.change_tile.size());
    return py::make_tuple(array_of(base, {views}), array_of(deltas.delta_end, {views}),
                          array_of(deltas.key_tiles, {keyframes, h, w}), array_of(deltas.key_armies, {keyframes, h, w}),
                          array_of(deltas.change_tile, {changes}), array_of(deltas.change_code, {changes}),
                          array_of(deltas.change_army, {changes}));
  });
}

// The views of view_deltas rebuilt (grl::decode_view_deltas, every column
// checked): (tiles, armies) of shape (views, H, W).
py::tuple undelta_views(py::handle view_base_in, py::handle delta_end_in, py::handle key_tiles_in,
                        py::handle key_armies_in, py::handle change_tile_in, py::handle change_code_in,
                        py::handle change_army_in) {
  auto [key_tiles, key_armies_any] = view_arrays(key_tiles_in, key_armies_in);
  const py::ssize_t keyframes = key_tiles.shape(0), h = key_tiles.shape(1), w = key_tiles.shape(2);
  auto view_base = exact_array<int32_t>(view_base_in, "view_base", "int32 (views,)");
  auto delta_end = exact_array<uint32_t>(delta_end_in, "delta_end", "uint32 (views,)");
  auto change_tile = exact_array<uint16_t>(change_tile_in, "change_tile", "uint16 (changes,)");
  auto change_code = exact_array<uint8_t>(change_code_in, "change_code", "uint8 (changes,)");
  const py::ssize_t views = view_base.size(), changes = change_tile.size();
  if (view_base.ndim() != 1 || delta_end.ndim() != 1 || delta_end.size() != views) {
    throw py::value_error("delta_end: expected " + std::to_string(views) + " values (one a view), got " +
                          std::to_string(delta_end.size()));
  }
  if (change_tile.ndim() != 1 || change_code.ndim() != 1 || change_code.size() != changes) {
    throw py::value_error("change_code: expected " + std::to_string(changes) + " values (one a change), got " +
                          std::to_string(change_code.size()));
  }
  return with_army_type(key_armies_any, "key_armies", [&](auto army) -> py::tuple {
    using Army = decltype(army);
    auto key_armies = exact_array<Army>(key_armies_any, "key_armies", "uint8, uint16 or int32");
    auto change_army = exact_array<Army>(change_army_in, "change_army", "the dtype of key_armies");
    if (change_army.ndim() != 1 || change_army.size() != changes) {
      throw py::value_error("change_army: expected " + std::to_string(changes) + " values (one a change), got " +
                            std::to_string(change_army.size()));
    }
    const std::vector<py::ssize_t> shape{views, h, w};
    auto tiles = grl::bindings::recycled_array<uint8_t>(shape);
    auto armies = grl::bindings::recycled_array<Army>(shape);
    const grl::ViewDeltaColumns<Army> in{static_cast<size_t>(views),     static_cast<size_t>(h) * static_cast<size_t>(w),
                                         static_cast<size_t>(keyframes), static_cast<size_t>(changes),
                                         view_base.data(),               delta_end.data(),
                                         key_tiles.data(),               key_armies.data(),
                                         change_tile.data(),             change_code.data(),
                                         change_army.data()};
    uint8_t* tile_data = tiles.mutable_data();
    Army* army_data = armies.mutable_data();
    {
      py::gil_scoped_release release;
      grl::decode_view_deltas(in, tile_data, army_data);
    }
    return py::make_tuple(tiles, armies);
  });
}

// The packed action masks of views `views` (grl::view_action_masks).
py::array view_masks(py::handle tiles_in, py::handle armies_in, py::handle views_in, int num_threads) {
  auto [tiles, armies_any] = view_arrays(tiles_in, armies_in);
  const py::ssize_t count = tiles.shape(0);
  const auto [h, w] = grl::bindings::board_shape(tiles, 1, "tiles");
  auto views = view_indices(views_in, "views", count);
  const int64_t bad = grl::find_invalid_code(tiles.data(), tiles.size());
  if (bad >= 0) {
    throw py::value_error("tiles: code " + std::to_string(tiles.data()[bad]) + " at flat index " + std::to_string(bad) +
                          " is not a tile code (0.." + std::to_string(grl::kTileCodes - 1) + ")");
  }
  const size_t rows = static_cast<size_t>(views.size());
  auto masks = grl::bindings::recycled_array<uint8_t>(
      {static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(grl::packed_mask_bytes(static_cast<size_t>(h) * w))});
  uint8_t* out = masks.mutable_data();
  with_army_type(armies_any, "armies", [&](auto army) {
    using Army = decltype(army);
    auto armies = exact_array<Army>(armies_any, "armies", "uint8, uint16 or int32");
    with_pool(num_threads, [&](grl::ThreadPool* pool) {
      grl::view_action_masks(tiles.data(), armies.data(), views.data(), rows, h, w, out, pool);
    });
  });
  return masks;
}

}  // namespace

void bind_observations(py::module_& m) {
  m.attr("TILE_CODES") = grl::kTileCodes;
  m.attr("CODE_FOG") = grl::kCodeFog;
  m.attr("CODE_FOG_OBSTACLE") = grl::kCodeFogObstacle;
  m.attr("FIRST_VISIBLE_CODE") = grl::kFirstVisibleCode;
  m.attr("CHANNEL_CODES") = std::vector<uint32_t>(grl::kChannelCodes.begin(), grl::kChannelCodes.end());
  m.attr("ARMY_CHANNELS") = grl::kArmyChannels;
  m.attr("OWN_TILE_CODES") = grl::kOwnTileCodes;
  m.attr("MOUNTAIN_CODES") = grl::kMountainCodes;
  m.attr("NARROW_ARMY_MAX") = grl::kNarrowArmyMax;
  m.attr("NARROW_ARMY_SCALE_MAX") = grl::kNarrowArmyScaleMax;
  m.attr("BYTE_ARMY_MAX") = grl::kByteArmyMax;
  m.attr("VIEW_ARMY_SHIFT") = grl::kViewArmyShift;

  m.def("expand_observations", &expand, py::arg("tiles"), py::arg("armies"), py::arg("army_scaling") = "linear",
        py::arg("army_scale") = 1000.0f, py::arg("obstacles") = false, py::arg("num_threads") = 0,
        py::arg("out") = py::none());
  m.def("unpack_action_masks", &unpack_masks, py::arg("action_masks"), py::arg("height"), py::arg("width"),
        py::arg("num_threads") = 0);
  m.def("compact_rows", &compact_rows, py::arg("state_kind"), py::arg("state_owner"), py::arg("state_army"),
        py::arg("state_index"), py::arg("player_id"), py::arg("obstacles") = false, py::arg("wide") = false,
        py::arg("masks") = true, py::arg("num_threads") = 0);
  m.def("compact_experiences", &compact_experiences, py::arg("state_kind"), py::arg("state_owner"),
        py::arg("state_army"), py::arg("state_index"), py::arg("next_state_index"), py::arg("player_id"),
        py::arg("obstacles") = false, py::arg("wide") = false, py::arg("num_threads") = 0);
  m.def("compact_view_plan", &compact_view_plan, py::arg("state_index"), py::arg("next_state_index"),
        py::arg("player_id"), py::arg("states"));
  m.def("compact_views", &compact_views, py::arg("state_kind"), py::arg("state_owner"), py::arg("state_army"),
        py::arg("view_state"), py::arg("view_player"), py::arg("masked_views"), py::arg("obstacles") = false,
        py::arg("army_bytes") = 2, py::arg("num_threads") = 0);
  m.def("view_deltas", &view_deltas, py::arg("tiles"), py::arg("armies"), py::arg("state_view"),
        py::arg("next_state_view"));
  m.def("undelta_views", &undelta_views, py::arg("view_base"), py::arg("delta_end"), py::arg("key_tiles"),
        py::arg("key_armies"), py::arg("change_tile"), py::arg("change_code"), py::arg("change_army"));
  m.def("view_action_masks", &view_masks, py::arg("tiles"), py::arg("armies"), py::arg("views"),
        py::arg("num_threads") = 1);
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
