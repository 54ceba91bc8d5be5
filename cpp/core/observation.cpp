#include "observation.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <vector>
#include <cstring>

#include "game.hpp"

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

const uint8_t* open_directions_of(const StateView& s) {
  if (s.open_directions != nullptr) return s.open_directions;
  thread_local std::vector<uint8_t> computed;
  computed.resize(static_cast<size_t>(s.height) * s.width);
  compute_open_directions(s.kind, s.height, s.width, computed.data());
  return computed.data();
}

void encode_action_mask(const StateView& s, int player, uint8_t* out) {
  const int n = s.height * s.width;
  const uint8_t* open = open_directions_of(s);
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
    const uint32_t bits = movable_directions(s.owner[t], s.army[t], open[t], p);
    std::memcpy(out + 4 * t, &kSpread[bits], 4);
  }
}

}  // namespace grl
