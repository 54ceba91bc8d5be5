// Distinct compact views coded as keyframes and deltas (the compact stream's
// layout version 2). The views of one player on consecutive ticks differ in a
// few tiles, so a view that has an earlier view of the same chain is sent as
// the tiles that differ from it (tile index, code, army) instead of whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace grl {

// Tile indices of changes are uint16: packed batches hold boards of at most
// 256x256 tiles.
constexpr size_t kMaxDeltaTiles = size_t{1} << 16;

// Per view, the earlier view it is coded against, or -1 (a keyframe). Each row
// links its state and next state views; the later of the two is coded against
// the earlier (the first row linking it wins), so every chain starts at a
// keyframe and references only go backward. Indices are checked by the caller.
std::vector<int32_t> choose_view_bases(const int32_t* state_view, const int32_t* next_state_view, size_t rows,
                                       size_t views);

// A view set coded against `view_base`: the keyframes whole, in view order, and
// every other view's changes, view j's at delta_end[j-1] .. delta_end[j].
template <typename Army>
struct ViewDeltas {
  std::vector<uint32_t> delta_end;  // (views)
  std::vector<uint8_t> key_tiles;   // (keyframes, tiles)
  std::vector<Army> key_armies;     // (keyframes, tiles)
  std::vector<uint16_t> change_tile;
  std::vector<uint8_t> change_code;
  std::vector<Army> change_army;
};

// Codes `views` views of `tiles` tiles (codes and armies) against `view_base`
// (each -1 or an earlier view, checked by the caller).
template <typename Army>
void encode_view_deltas(const uint8_t* codes, const Army* armies, size_t views, size_t tiles,
                        const int32_t* view_base, ViewDeltas<Army>& out);

// Coded views as received: every pointer covers the count beside it.
template <typename Army>
struct ViewDeltaColumns {
  size_t views, tiles, keyframes, changes;
  const int32_t* view_base;
  const uint32_t* delta_end;
  const uint8_t* key_tiles;
  const Army* key_armies;
  const uint16_t* change_tile;
  const uint8_t* change_code;
  const Army* change_army;
};

// Checks coded views as hostile input (bases only backward, one keyframe per
// -1, change ends in order and within the changes, tile indices on the board,
// codes below kTileCodes, armies >= 0) and rebuilds them into `codes` and
// `armies` (views, tiles). Throws std::invalid_argument naming the first bad
// column and value, before anything is written.
template <typename Army>
void decode_view_deltas(const ViewDeltaColumns<Army>& in, uint8_t* codes, Army* armies);

}  // namespace grl
