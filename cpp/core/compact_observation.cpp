#include "compact_observation.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "thread_pool.hpp"
#include "vectorize.hpp"

namespace grl {

namespace {

// Batches below this many tiles expand on the calling thread: waking the pool costs more.
constexpr size_t kParallelTiles = 1 << 16;

// The army values of 0 .. kNarrowArmyMax under log scaling, per thread, for
// the last config it used (log1p per tile costs more than the whole expansion).
const float* log_army_table(const ObservationConfig& config) {
  thread_local std::vector<float> table;
  thread_local float table_scale = 0;
  if (table.empty() || table_scale != config.army_scale) {
    table.resize(kNarrowArmyMax + 1);
    for (int32_t a = 0; a <= kNarrowArmyMax; ++a) table[a] = army_value(a, config);
    table_scale = config.army_scale;
  }
  return table.data();
}

GRL_VECTOR_CLONES
void linear_armies(const uint8_t* armies, size_t n, float inv, float* out) {
  for (size_t t = 0; t < n; ++t) out[t] = std::min(static_cast<float>(armies[t]) * inv, 1.0f);
}

GRL_VECTOR_CLONES
void linear_armies(const uint16_t* armies, size_t n, float inv, float* out) {
  for (size_t t = 0; t < n; ++t) out[t] = std::min(static_cast<float>(armies[t]) * inv, 1.0f);
}

GRL_VECTOR_CLONES
void linear_armies(const int32_t* armies, size_t n, float inv, float* out) {
  for (size_t t = 0; t < n; ++t) out[t] = std::min(static_cast<float>(armies[t]) * inv, 1.0f);
}

// Every tile's scaled army, as army_value computes it.
template <typename Army>
void scaled_armies(const Army* armies, size_t n, const ObservationConfig& config, float* out) {
  static_assert(sizeof(Army) <= sizeof(uint16_t), "unsigned armies within the table");
  if (config.scale == ObservationConfig::kLinear) return linear_armies(armies, n, 1.0f / config.army_scale, out);
  const float* table = log_army_table(config);
  for (size_t t = 0; t < n; ++t) out[t] = table[armies[t]];
}

void scaled_armies(const int32_t* armies, size_t n, const ObservationConfig& config, float* out) {
  if (config.scale == ObservationConfig::kLinear) return linear_armies(armies, n, 1.0f / config.army_scale, out);
  const float* table = log_army_table(config);
  for (size_t t = 0; t < n; ++t) {
    const int32_t a = armies[t];
    out[t] = static_cast<uint32_t>(a) <= static_cast<uint32_t>(kNarrowArmyMax) ? table[a] : army_value(a, config);
  }
}

// One view's channels from its codes and scaled armies: one simple loop per
// channel so the compiler vectorizes it.
GRL_VECTOR_CLONES
void expand_row(const uint8_t* codes, const float* army, size_t n, int channels, float* out) {
  for (int c = 0; c < channels; ++c) {
    const uint32_t set = kChannelCodes[c];
    float* ch = out + c * n;
    if (c < kArmyChannels) {
      for (size_t t = 0; t < n; ++t) ch[t] = (set >> codes[t] & 1u) ? army[t] : 0.0f;
    } else {
      for (size_t t = 0; t < n; ++t) ch[t] = static_cast<float>(set >> codes[t] & 1u);
    }
  }
}

GRL_VECTOR_CLONES
void encode_codes(const StateView& s, int player, bool obstacles, const uint8_t* visible, uint8_t* codes) {
  static_assert(kCodeFog == 0 && kCodeFogObstacle == 1, "a hidden tile's code is its obstacle bit");
  static_assert(kRelationNeutral == 0 && kRelationOwn == 1 && kRelationEnemy == 2);
  const int n = s.height * s.width;
  const int16_t p = static_cast<int16_t>(player);
  const uint32_t friendly = team_players(s, player, false);
  const uint8_t obstacle_bit = obstacles ? 1 : 0;
  const uint8_t* kind = s.kind;
  const int16_t* owner = s.owner;
  if (friendly == (1u << player)) {
    // No teammates (free-for-all): the relation is arithmetic on the owner alone.
    for (int t = 0; t < n; ++t) {
      const int16_t o = owner[t];
      const uint8_t k = kind[t];
      const uint8_t relation = static_cast<uint8_t>((o == p) + 2 * ((o >= 0) & (o != p)));
      const uint8_t seen = static_cast<uint8_t>(kFirstVisibleCode + 4 * relation + k);
      const uint8_t hidden = obstacle_bit & ((k == kMountain) | (k == kCity));
      codes[t] = visible[t] ? seen : hidden;
    }
    return;
  }
  for (int t = 0; t < n; ++t) {
    const int16_t o = owner[t];
    const uint8_t relation = o == p ? kRelationOwn
                             : o < 0 ? kRelationNeutral
                             : (friendly >> (o & 31) & 1u) ? kRelationTeam
                                                           : kRelationEnemy;
    const uint8_t seen = static_cast<uint8_t>(kFirstVisibleCode + 4 * relation + kind[t]);
    const uint8_t hidden = obstacle_bit & ((kind[t] == kMountain) | (kind[t] == kCity));
    codes[t] = visible[t] ? seen : hidden;
  }
}

GRL_VECTOR_CLONES
void visible_armies(const int32_t* army, const uint8_t* visible, int n, uint8_t* out) {
  for (int t = 0; t < n; ++t) out[t] = visible[t] ? static_cast<uint8_t>(std::min(army[t], kByteArmyMax)) : 0;
}

GRL_VECTOR_CLONES
void visible_armies(const int32_t* army, const uint8_t* visible, int n, uint16_t* out) {
  for (int t = 0; t < n; ++t) out[t] = visible[t] ? static_cast<uint16_t>(std::min(army[t], kNarrowArmyMax)) : 0;
}

GRL_VECTOR_CLONES
void visible_armies(const int32_t* army, const uint8_t* visible, int n, int32_t* out) {
  for (int t = 0; t < n; ++t) out[t] = visible[t] ? army[t] : 0;
}

template <typename Army>
void encode_compact_as(const StateView& s, int player, bool obstacles, uint8_t* codes, Army* armies, uint8_t* scratch) {
  compute_visibility(s, player, scratch);
  encode_codes(s, player, obstacles, scratch, codes);
  visible_armies(s.army, scratch, s.height * s.width, armies);
}

template <typename Army>
void expand_as(const uint8_t* codes, const Army* armies, size_t rows, size_t tiles, const ObservationConfig& config,
               float* out, ThreadPool* pool) {
  const int channels = config.channels();
  auto run = [&](size_t begin, size_t end) {
    std::vector<float> army(tiles);
    for (size_t r = begin; r < end; ++r) {
      scaled_armies(armies + r * tiles, tiles, config, army.data());
      expand_row(codes + r * tiles, army.data(), tiles, channels, out + r * channels * tiles);
    }
  };
  if (pool && pool->size() > 1 && rows * tiles >= kParallelTiles) {
    pool->parallel_for(static_cast<int>(rows), [&](int begin, int end) { run(begin, end); });
  } else {
    run(0, rows);
  }
}

// Byte b of a packed mask as 8 bools (bit i to byte i of the little-endian word).
constexpr auto kByteToBools = [] {
  std::array<uint64_t, 256> table{};
  for (uint64_t bits = 0; bits < 256; ++bits) {
    for (int i = 0; i < 8; ++i) table[bits] |= ((bits >> i) & 1u) << (8 * i);
  }
  return table;
}();

}  // namespace

float army_value(int64_t army, const ObservationConfig& config) {
  if (config.scale == ObservationConfig::kLog) {
    const float inv = 1.0f / std::log1p(config.army_scale);
    return std::min(std::log1p(static_cast<float>(army)) * inv, 1.0f);
  }
  return std::min(static_cast<float>(army) * (1.0f / config.army_scale), 1.0f);
}

void encode_observation(const StateView& s, int player, const ObservationConfig& config, float* out,
                        uint8_t* scratch) {
  const size_t n = static_cast<size_t>(s.height) * s.width;
  uint8_t* codes = scratch + n;
  float* army = reinterpret_cast<float*>(scratch + 4 * ((2 * n + 3) / 4));
  compute_visibility(s, player, scratch);
  encode_codes(s, player, config.obstacles, scratch, codes);
  scaled_armies(s.army, n, config, army);
  expand_row(codes, army, n, config.channels(), out);
}

GRL_VECTOR_CLONES
int32_t max_army(const int32_t* army, size_t n) {
  int32_t most = 0;
  for (size_t t = 0; t < n; ++t) most = std::max(most, army[t]);
  return most;
}

GRL_VECTOR_CLONES
void widen_armies(const uint8_t* armies, size_t n, uint16_t* out) {
  for (size_t t = 0; t < n; ++t) out[t] = armies[t];
}

GRL_VECTOR_CLONES
void widen_armies(const uint8_t* armies, size_t n, int32_t* out) {
  for (size_t t = 0; t < n; ++t) out[t] = armies[t];
}

void encode_compact(const StateView& s, int player, bool obstacles, uint8_t* codes, uint8_t* armies,
                    uint8_t* scratch) {
  encode_compact_as(s, player, obstacles, codes, armies, scratch);
}

void encode_compact(const StateView& s, int player, bool obstacles, uint8_t* codes, uint16_t* armies,
                    uint8_t* scratch) {
  encode_compact_as(s, player, obstacles, codes, armies, scratch);
}

void encode_compact(const StateView& s, int player, bool obstacles, uint8_t* codes, int32_t* armies,
                    uint8_t* scratch) {
  encode_compact_as(s, player, obstacles, codes, armies, scratch);
}

namespace {

GRL_VECTOR_CLONES
void pack_nibbles(const uint8_t* nibbles, int n, uint8_t* out) {
  for (int j = 0; j < n / 2; ++j) out[j] = static_cast<uint8_t>(nibbles[2 * j] | nibbles[2 * j + 1] << 4);
  if (n % 2) out[n / 2] = nibbles[n - 1];
}

}  // namespace

void encode_packed_action_mask(const StateView& s, int player, uint8_t* out) {
  thread_local std::vector<uint8_t> nibbles;
  nibbles.resize(static_cast<size_t>(s.height) * s.width);
  movable_tiles(s, player, nibbles.data());
  pack_nibbles(nibbles.data(), s.height * s.width, out);
}

namespace {

// Own tiles and seen mountains told apart by the layout of the codes (byte
// arithmetic that vectorizes), checked against the channels' code sets.
constexpr bool is_own_code(uint8_t code) {
  return static_cast<uint8_t>(code - visible_code(kRelationOwn, 0)) < 4;
}
constexpr bool is_mountain_code(uint8_t code) { return (code & 3) == (visible_code(0, kMountain) & 3); }
static_assert([] {
  for (int code = 0; code < kTileCodes; ++code) {
    const auto c = static_cast<uint8_t>(code);
    if (is_own_code(c) != ((kOwnTileCodes >> code & 1u) != 0)) return false;
    if (is_mountain_code(c) != ((kMountainCodes >> code & 1u) != 0)) return false;
  }
  return true;
}());

GRL_VECTOR_CLONES
void passable_tiles(const uint8_t* codes, int n, uint8_t* out) {
  for (int t = 0; t < n; ++t) out[t] = !is_mountain_code(codes[t]);
}

GRL_VECTOR_CLONES
void movable_view_tiles(const uint8_t* codes, const uint8_t* armies, int n, uint8_t* out) {
  for (int t = 0; t < n; ++t) out[t] = is_own_code(codes[t]) & (armies[t] >= 2);
}

GRL_VECTOR_CLONES
void movable_view_tiles(const uint8_t* codes, const uint16_t* armies, int n, uint8_t* out) {
  for (int t = 0; t < n; ++t) out[t] = is_own_code(codes[t]) & (armies[t] >= 2);
}

GRL_VECTOR_CLONES
void movable_view_tiles(const uint8_t* codes, const int32_t* armies, int n, uint8_t* out) {
  for (int t = 0; t < n; ++t) out[t] = is_own_code(codes[t]) & (armies[t] >= 2);
}

// Each tile's nibble: the open directions (up, down, left, right) of a movable
// tile. `passable` has `width` closed tiles before and after the board;
// `not_first`/`not_last` say whether a tile has a left/right neighbour.
GRL_VECTOR_CLONES
void open_nibbles(const uint8_t* passable, const uint8_t* movable, const uint8_t* not_first, const uint8_t* not_last,
                  int n, int width, uint8_t* out) {
  for (int t = 0; t < n; ++t) {
    const auto open = static_cast<uint8_t>(passable[t - width] | passable[t + width] << 1 |
                                           (passable[t - 1] & not_first[t]) << 2 | (passable[t + 1] & not_last[t]) << 3);
    out[t] = static_cast<uint8_t>(-movable[t]) & open;
  }
}

// The scratch of view masks of one board size: the passable tiles between
// closed rows, and which tiles have left and right neighbours.
struct MaskScratch {
  int height, width;
  std::vector<uint8_t> passable, not_first, not_last, movable, nibbles;

  MaskScratch(int h, int w)
      : height(h),
        width(w),
        passable(static_cast<size_t>((h + 2) * w), 0),
        not_first(static_cast<size_t>(h * w)),
        not_last(static_cast<size_t>(h * w)),
        movable(static_cast<size_t>(h * w)),
        nibbles(static_cast<size_t>(h * w)) {
    for (int t = 0; t < h * w; ++t) {
      not_first[t] = t % w != 0;
      not_last[t] = t % w != w - 1;
    }
  }

  template <typename Army>
  void mask(const uint8_t* codes, const Army* armies, uint8_t* out) {
    const int n = height * width;
    uint8_t* board = passable.data() + width;
    passable_tiles(codes, n, board);
    movable_view_tiles(codes, armies, n, movable.data());
    open_nibbles(board, movable.data(), not_first.data(), not_last.data(), n, width, nibbles.data());
    pack_nibbles(nibbles.data(), n, out);
  }
};

template <typename Army>
void view_action_masks_as(const uint8_t* codes, const Army* armies, const int32_t* views, size_t rows, int height,
                          int width, uint8_t* out, ThreadPool* pool) {
  const size_t tiles = static_cast<size_t>(height) * width, row_bytes = packed_mask_bytes(tiles);
  auto run = [&](size_t begin, size_t end) {
    MaskScratch scratch(height, width);
    for (size_t i = begin; i < end; ++i) {
      const size_t at = static_cast<size_t>(views[i]) * tiles;
      scratch.mask(codes + at, armies + at, out + i * row_bytes);
    }
  };
  if (pool && pool->size() > 1 && rows * tiles >= kParallelTiles) {
    pool->parallel_for(static_cast<int>(rows), [&](int begin, int end) { run(begin, end); });
  } else {
    run(0, rows);
  }
}

}  // namespace

void view_action_masks(const uint8_t* codes, const uint8_t* armies, const int32_t* views, size_t rows, int height,
                       int width, uint8_t* out, ThreadPool* pool) {
  view_action_masks_as(codes, armies, views, rows, height, width, out, pool);
}

void view_action_masks(const uint8_t* codes, const uint16_t* armies, const int32_t* views, size_t rows, int height,
                       int width, uint8_t* out, ThreadPool* pool) {
  view_action_masks_as(codes, armies, views, rows, height, width, out, pool);
}

void view_action_masks(const uint8_t* codes, const int32_t* armies, const int32_t* views, size_t rows, int height,
                       int width, uint8_t* out, ThreadPool* pool) {
  view_action_masks_as(codes, armies, views, rows, height, width, out, pool);
}

void expand_observations(const uint8_t* codes, const uint8_t* armies, size_t rows, size_t tiles,
                         const ObservationConfig& config, float* out, ThreadPool* pool) {
  expand_as(codes, armies, rows, tiles, config, out, pool);
}

void expand_observations(const uint8_t* codes, const uint16_t* armies, size_t rows, size_t tiles,
                         const ObservationConfig& config, float* out, ThreadPool* pool) {
  expand_as(codes, armies, rows, tiles, config, out, pool);
}

void expand_observations(const uint8_t* codes, const int32_t* armies, size_t rows, size_t tiles,
                         const ObservationConfig& config, float* out, ThreadPool* pool) {
  expand_as(codes, armies, rows, tiles, config, out, pool);
}

void unpack_action_masks(const uint8_t* packed, size_t rows, size_t tiles, uint8_t* out, ThreadPool* pool) {
  const size_t row_bytes = packed_mask_bytes(tiles), whole = tiles / 2, mask_size = tiles * 4;
  auto run = [&](size_t begin, size_t end) {
    for (size_t r = begin; r < end; ++r) {
      const uint8_t* in = packed + r * row_bytes;
      uint8_t* row = out + r * mask_size;
      for (size_t b = 0; b < whole; ++b) std::memcpy(row + 8 * b, &kByteToBools[in[b]], 8);
      if (tiles % 2) std::memcpy(row + 8 * whole, &kByteToBools[in[whole] & 15u], 4);
    }
  };
  if (pool && pool->size() > 1 && rows * tiles >= kParallelTiles) {
    pool->parallel_for(static_cast<int>(rows), [&](int begin, int end) { run(begin, end); });
  } else {
    run(0, rows);
  }
}

void CompactViews::assign(size_t rows, size_t tiles_per_row, bool wide_form) {
  wide = wide_form;
  tiles = tiles_per_row;
  codes.assign(rows * tiles, kCodeFog);
  armies.assign(wide ? 0 : rows * tiles, 0);
  wide_armies.assign(wide ? rows * tiles : 0, 0);
}

void CompactViews::write(size_t row, const StateView& s, int player, bool obstacles, uint8_t* scratch) {
  uint8_t* row_codes = codes.data() + row * tiles;
  if (wide) encode_compact(s, player, obstacles, row_codes, wide_armies.data() + row * tiles, scratch);
  else encode_compact(s, player, obstacles, row_codes, armies.data() + row * tiles, scratch);
}

namespace {

// Views of rows `selected[0 .. count)` (every row 0 .. count when null), each
// written at its own row of the outputs.
void encode_selected_rows(const StateTable& states, const int32_t* state_index, const int32_t* player,
                          const size_t* selected, size_t count, bool obstacles, CompactRowsOut out, uint8_t* masks,
                          ThreadPool* pool) {
  const size_t tiles = static_cast<size_t>(states.height) * states.width;
  const size_t army_size = army_bytes(out.width);
  auto* armies = static_cast<uint8_t*>(out.armies);
  auto run = [&](size_t begin, size_t end) {
    std::vector<uint8_t> scratch(tiles * kObservationScratchPerTile);
    // The open directions of the last state: the players of one tick are adjacent rows.
    std::vector<uint8_t> open(tiles);
    int64_t open_state = -1;
    for (size_t i = begin; i < end; ++i) {
      const size_t r = selected ? selected[i] : i;
      const size_t at = static_cast<size_t>(state_index[r]) * tiles;
      StateView view{states.height, states.width, states.kind + at, states.owner + at, states.army + at};
      void* target = armies + r * tiles * army_size;
      uint8_t* codes = out.codes + r * tiles;
      switch (out.width) {
        case ArmyWidth::kByte:
          encode_compact(view, player[r], obstacles, codes, static_cast<uint8_t*>(target), scratch.data());
          break;
        case ArmyWidth::kNarrow:
          encode_compact(view, player[r], obstacles, codes, static_cast<uint16_t*>(target), scratch.data());
          break;
        case ArmyWidth::kWide:
          encode_compact(view, player[r], obstacles, codes, static_cast<int32_t*>(target), scratch.data());
          break;
      }
      if (masks) {
        if (open_state != state_index[r]) {
          compute_open_directions(view.kind, view.height, view.width, open.data());
          open_state = state_index[r];
        }
        view.open_directions = open.data();
        encode_packed_action_mask(view, player[r], masks + r * packed_mask_bytes(tiles));
      }
    }
  };
  if (pool && pool->size() > 1 && count * tiles >= kParallelTiles) {
    pool->parallel_for(static_cast<int>(count), [&](int begin, int end) { run(begin, end); });
  } else {
    run(0, count);
  }
}

}  // namespace

void encode_compact_rows(const StateTable& states, const int32_t* state_index, const int32_t* player, size_t rows,
                         bool obstacles, CompactRowsOut out, uint8_t* masks, ThreadPool* pool) {
  encode_selected_rows(states, state_index, player, nullptr, rows, obstacles, out, masks, pool);
}

ExperienceViews plan_experience_views(const int32_t* state_index, const int32_t* next_state_index,
                                      const int32_t* player, size_t rows) {
  ExperienceViews plan;
  plan.next_state_view.resize(rows);
  plan.view_state.assign(state_index, state_index + rows);
  plan.view_player.assign(player, player + rows);
  if (rows == 0) return plan;
  // The view of each (state, player) seen so far, by state * kMaxPlayers + player.
  const size_t states_seen = static_cast<size_t>(std::max(*std::max_element(state_index, state_index + rows),
                                                          *std::max_element(next_state_index, next_state_index + rows))) +
                             1;
  std::vector<int32_t> view_of(states_seen * kMaxPlayers, -1);
  for (size_t r = rows; r-- > 0;) view_of[static_cast<size_t>(state_index[r]) * kMaxPlayers + player[r]] = static_cast<int32_t>(r);
  for (size_t r = 0; r < rows; ++r) {
    int32_t& view = view_of[static_cast<size_t>(next_state_index[r]) * kMaxPlayers + player[r]];
    if (view < 0) {
      view = static_cast<int32_t>(plan.view_state.size());
      plan.view_state.push_back(next_state_index[r]);
      plan.view_player.push_back(player[r]);
    }
    plan.next_state_view[r] = view;
  }
  return plan;
}

void encode_compact_experiences(const StateTable& states, const int32_t* state_index, const int32_t* next_state_index,
                                const int32_t* player, size_t rows, bool obstacles, CompactRowsOut state,
                                CompactRowsOut next_state, uint8_t* masks, ThreadPool* pool) {
  encode_selected_rows(states, state_index, player, nullptr, rows, obstacles, state, masks, pool);
  const ExperienceViews plan = plan_experience_views(state_index, next_state_index, player, rows);
  const size_t tiles = static_cast<size_t>(states.height) * states.width;
  const size_t army_row = tiles * army_bytes(state.width);
  const auto* state_armies = static_cast<const uint8_t*>(state.armies);
  auto* next_armies = static_cast<uint8_t*>(next_state.armies);
  std::vector<size_t> computed;  // rows whose next state no row has as its state
  for (size_t r = 0; r < rows; ++r) {
    const auto source = static_cast<size_t>(plan.next_state_view[r]);
    if (source >= rows) {
      computed.push_back(r);
      continue;
    }
    std::memcpy(next_state.codes + r * tiles, state.codes + source * tiles, tiles);
    std::memcpy(next_armies + r * army_row, state_armies + source * army_row, army_row);
  }
  encode_selected_rows(states, next_state_index, player, computed.data(), computed.size(), obstacles, next_state,
                       nullptr, pool);
}

int64_t find_invalid_code(const uint8_t* codes, size_t count) {
  // Vectorized scan for "any", then the first position only when there is one.
  uint8_t any = 0;
  for (size_t i = 0; i < count; ++i) any |= codes[i] >= kTileCodes;
  if (!any) return -1;
  for (size_t i = 0; i < count; ++i) {
    if (codes[i] >= kTileCodes) return static_cast<int64_t>(i);
  }
  return -1;
}

}  // namespace grl
