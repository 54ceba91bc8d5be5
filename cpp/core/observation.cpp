#include "observation.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <vector>
#include <cmath>
#include <cstring>

#include "game.hpp"
#include "vectorize.hpp"

namespace grl {

namespace {

// A set of players as bits owner + 1, so that a tile's owner (-1 neutral) tests
// without a branch; has_owner masks the shift so no owner value shifts too far.
inline uint32_t owner_bits(uint32_t players) { return players << 1; }
inline uint8_t has_owner(uint32_t bits, int16_t owner) {
  return bits >> (static_cast<uint32_t>(owner + 1) & 31u) & 1u;
}

}  // namespace

uint32_t team_players(const StateView& s, int player, bool alive_only) {
  uint32_t players = 1u << player;
  if (s.teams == nullptr) return players;
  for (int q = 0; q < s.num_players; ++q) {
    if (s.teams[q] == s.teams[player] && (!alive_only || s.alive[q])) players |= 1u << q;
  }
  return players;
}

void compute_visibility(const StateView& s, int player, uint8_t* visible) {
  const int h = s.height, w = s.width;
  const uint32_t sight = owner_bits(team_players(s, player, true));
  // Dilate the owned-tile mask by one tile along rows (through a zero-padded
  // row), then across rows keeping the previous undilated row. The rows are
  // as wide as the board, reused by the thread.
  const size_t row_bytes = static_cast<size_t>(std::max(w, 0));
  thread_local std::vector<uint8_t> rows;
  rows.assign(3 * row_bytes + 2, 0);
  uint8_t* padded = rows.data();
  uint8_t* prev_row = padded + w + 2;
  uint8_t* cur_row = prev_row + w;
  for (int y = 0; y < h; ++y) {
    const int16_t* own = s.owner + y * w;
    uint8_t* row = visible + y * w;
    for (int x = 0; x < w; ++x) padded[x + 1] = has_owner(sight, own[x]);
    for (int x = 0; x < w; ++x) row[x] = padded[x] | padded[x + 1] | padded[x + 2];
  }
  for (int y = 0; y < h; ++y) {
    uint8_t* row = visible + y * w;
    std::memcpy(cur_row, row, row_bytes);
    if (y + 1 < h) {
      const uint8_t* next = row + w;
      for (int x = 0; x < w; ++x) row[x] = cur_row[x] | prev_row[x] | next[x];
    } else {
      for (int x = 0; x < w; ++x) row[x] = cur_row[x] | prev_row[x];
    }
    std::memcpy(prev_row, cur_row, row_bytes);
  }
}

// Simple one-channel loops so the compiler vectorizes them.

GRL_VECTOR_CLONES
void encode_observation(const StateView& s, int player, const ObservationConfig& config, float* out,
                        uint8_t* scratch) {
  const int n = s.height * s.width;
  uint8_t* visible = scratch;
  uint8_t* mine = scratch + n;
  uint8_t* enemy = scratch + 2 * n;
  float* army = reinterpret_cast<float*>(scratch + 4 * ((3 * n + 3) / 4));
  compute_visibility(s, player, visible);
  const int16_t* owner = s.owner;
  const uint8_t* kind = s.kind;
  const int16_t p = static_cast<int16_t>(player);
  const uint32_t friendly = owner_bits(team_players(s, player, false));
  if (config.scale == ObservationConfig::kLog) {
    const float inv = 1.0f / std::log1p(config.army_scale);
    for (int t = 0; t < n; ++t) army[t] = std::min(std::log1p(static_cast<float>(s.army[t])) * inv, 1.0f);
  } else {
    const float inv = 1.0f / config.army_scale;
    for (int t = 0; t < n; ++t) army[t] = std::min(static_cast<float>(s.army[t]) * inv, 1.0f);
  }
  for (int t = 0; t < n; ++t) {
    mine[t] = owner[t] == p;
    enemy[t] = visible[t] & (owner[t] >= 0) & !has_owner(friendly, owner[t]);
  }
  float* ch = out;
  for (int t = 0; t < n; ++t) ch[t] = mine[t] ? army[t] : 0.0f;
  ch += n;
  for (int t = 0; t < n; ++t) ch[t] = enemy[t] ? army[t] : 0.0f;
  ch += n;
  for (int t = 0; t < n; ++t) ch[t] = mine[t];
  ch += n;
  for (int t = 0; t < n; ++t) ch[t] = enemy[t];
  ch += n;
  for (int t = 0; t < n; ++t) ch[t] = visible[t] & (owner[t] == kNeutral) & (kind[t] != kMountain);
  ch += n;
  for (int t = 0; t < n; ++t) ch[t] = visible[t] & ((kind[t] == kCity) | (kind[t] == kGeneral));
  ch += n;
  for (int t = 0; t < n; ++t) ch[t] = visible[t] & (kind[t] == kMountain);
  ch += n;
  for (int t = 0; t < n; ++t) ch[t] = visible[t];
  ch += n;
  for (int t = 0; t < n; ++t) ch[t] = 1 - visible[t];
  if (!config.obstacles) return;
  ch += n;
  for (int t = 0; t < n; ++t) ch[t] = (1 - visible[t]) & ((kind[t] == kMountain) | (kind[t] == kCity));
}

void encode_action_mask(const StateView& s, int player, uint8_t* out) {
  const int n = s.height * s.width;
  const uint8_t* open = s.open_directions;
  thread_local std::vector<uint8_t> computed;
  if (open == nullptr) {
    computed.resize(static_cast<size_t>(n));
    compute_open_directions(s.kind, s.height, s.width, computed.data());
    open = computed.data();
  }
  // One 4-byte store per tile: the direction bits spread to one bool each
  // (byte d of the little-endian word is direction d).
  static_assert(std::endian::native == std::endian::little, "the mask spreading assumes little-endian");
  static constexpr auto kSpread = [] {
    std::array<uint32_t, 16> table{};
    for (uint32_t bits = 0; bits < 16; ++bits) {
      for (int d = 0; d < 4; ++d) table[bits] |= ((bits >> d) & 1u) << (8 * d);
    }
    return table;
  }();
  const int16_t p = static_cast<int16_t>(player);
  for (int t = 0; t < n; ++t) {
    const uint32_t bits = (s.owner[t] == p && s.army[t] >= 2) ? open[t] : 0;
    std::memcpy(out + 4 * t, &kSpread[bits], 4);
  }
}

}  // namespace grl
