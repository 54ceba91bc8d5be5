#include "observation.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "compact_observation.hpp"
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

// Flat passes over the board (no per-row loops) so that the compiler
// vectorizes them whatever the width: the owned tiles, dilated along rows
// (masks stop it at the row ends), then across rows (through zero rows
// before the first and after the last).
GRL_VECTOR_CLONES
void compute_visibility(const StateView& s, int player, uint8_t* visible) {
  const int h = s.height, w = s.width, n = h * w;
  const uint32_t sight = owner_bits(team_players(s, player, true));
  // Per thread: owned tiles with a zero each side, row-dilated tiles with a
  // zero row each side, and the row-end masks of the last board size seen.
  thread_local std::vector<uint8_t> owned_store, along_store, not_first, not_last;
  thread_local int mask_height = -1, mask_width = -1;
  if (mask_height != h || mask_width != w) {
    not_first.resize(static_cast<size_t>(n));
    not_last.resize(static_cast<size_t>(n));
    for (int t = 0; t < n; ++t) {
      not_first[t] = t % w != 0;
      not_last[t] = t % w != w - 1;
    }
    owned_store.assign(static_cast<size_t>(n) + 2, 0);
    along_store.assign(static_cast<size_t>(n) + 2 * static_cast<size_t>(w), 0);
    mask_height = h;
    mask_width = w;
  }
  uint8_t* owned = owned_store.data() + 1;
  uint8_t* along = along_store.data() + w;
  const int16_t* owner = s.owner;
  const uint8_t* first_ok = not_first.data();
  const uint8_t* last_ok = not_last.data();
  if (sight == owner_bits(1u << player)) {  // alone: a plain compare, twice the lanes of the shifts
    const auto p = static_cast<int16_t>(player);
    for (int t = 0; t < n; ++t) owned[t] = owner[t] == p;
  } else {
    for (int t = 0; t < n; ++t) owned[t] = has_owner(sight, owner[t]);
  }
  for (int t = 0; t < n; ++t) along[t] = owned[t] | (owned[t - 1] & first_ok[t]) | (owned[t + 1] & last_ok[t]);
  for (int t = 0; t < n; ++t) visible[t] = along[t] | along[t - w] | along[t + w];
}

const uint8_t* open_directions_of(const StateView& s) {
  if (s.open_directions != nullptr) return s.open_directions;
  thread_local std::vector<uint8_t> computed;
  computed.resize(static_cast<size_t>(s.height) * s.width);
  compute_open_directions(s.kind, s.height, s.width, computed.data());
  return computed.data();
}

GRL_VECTOR_CLONES
void movable_tiles(const StateView& s, int player, uint8_t* out) {
  const int n = s.height * s.width;
  const int16_t p = static_cast<int16_t>(player);
  const int16_t* owner = s.owner;
  const int32_t* army = s.army;
  const uint8_t* open = open_directions_of(s);
  // Masks rather than `&&` and `?:`: every load on every tile lets the loop
  // vectorize (it was a branch a tile, mispredicted on mixed boards).
  for (int t = 0; t < n; ++t) {
    const auto movable = static_cast<uint8_t>((owner[t] == p) & (army[t] >= 2));
    out[t] = open[t] & static_cast<uint8_t>(-movable);
  }
}

// The packed mask spread to bools: two tiles per 8-byte store.
void encode_action_mask(const StateView& s, int player, uint8_t* out) {
  const size_t tiles = static_cast<size_t>(s.height) * s.width;
  thread_local std::vector<uint8_t> packed;
  packed.resize(packed_mask_bytes(tiles));
  encode_packed_action_mask(s, player, packed.data());
  unpack_action_masks(packed.data(), 1, tiles, out);
}

void stream_floats(float* out, const float* in, size_t count) {
#if defined(__SSE2__)
  size_t t = 0;
  for (; t < count && reinterpret_cast<uintptr_t>(out + t) % 16 != 0; ++t) out[t] = in[t];
  for (; t + 16 <= count; t += 16) {
    for (size_t k = 0; k < 16; k += 4) _mm_stream_ps(out + t + k, _mm_loadu_ps(in + t + k));
  }
  for (; t < count; ++t) out[t] = in[t];
  _mm_sfence();
#else
  std::memcpy(out, in, count * sizeof(float));
#endif
}

}  // namespace grl
