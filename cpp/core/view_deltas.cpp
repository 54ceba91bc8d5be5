#include "view_deltas.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>

#include "compact_observation.hpp"
#include "vectorize.hpp"

namespace grl {

std::vector<int32_t> choose_view_bases(const int32_t* state_view, const int32_t* next_state_view, size_t rows,
                                       size_t views) {
  std::vector<int32_t> base(views, -1);
  for (size_t r = 0; r < rows; ++r) {
    const int32_t earlier = std::min(state_view[r], next_state_view[r]);
    const int32_t later = std::max(state_view[r], next_state_view[r]);
    if (earlier != later && base[static_cast<size_t>(later)] < 0) base[static_cast<size_t>(later)] = earlier;
  }
  return base;
}

namespace {

// changed[t] = 1 where view a differs from view b (one simple loop per army width, vectorized).
GRL_VECTOR_CLONES
void differing_tiles(const uint8_t* codes_a, const uint8_t* armies_a, const uint8_t* codes_b, const uint8_t* armies_b,
                     size_t tiles, uint8_t* changed) {
  for (size_t t = 0; t < tiles; ++t) changed[t] = (codes_a[t] != codes_b[t]) | (armies_a[t] != armies_b[t]);
}

GRL_VECTOR_CLONES
void differing_tiles(const uint8_t* codes_a, const uint16_t* armies_a, const uint8_t* codes_b, const uint16_t* armies_b,
                     size_t tiles, uint8_t* changed) {
  for (size_t t = 0; t < tiles; ++t) changed[t] = (codes_a[t] != codes_b[t]) | (armies_a[t] != armies_b[t]);
}

GRL_VECTOR_CLONES
void differing_tiles(const uint8_t* codes_a, const int32_t* armies_a, const uint8_t* codes_b, const int32_t* armies_b,
                     size_t tiles, uint8_t* changed) {
  for (size_t t = 0; t < tiles; ++t) changed[t] = (codes_a[t] != codes_b[t]) | (armies_a[t] != armies_b[t]);
}

std::string at(const char* column, size_t index) { return std::string(column) + " of view " + std::to_string(index); }

[[noreturn]] void refuse(const std::string& what) { throw std::invalid_argument(what); }

}  // namespace

template <typename Army>
void encode_view_deltas(const uint8_t* codes, const Army* armies, size_t views, size_t tiles,
                        const int32_t* view_base, ViewDeltas<Army>& out) {
  if (tiles > kMaxDeltaTiles) {
    refuse("tiles: coded views hold at most " + std::to_string(kMaxDeltaTiles) + " tiles, got " +
           std::to_string(tiles));
  }
  const size_t keyframes = static_cast<size_t>(std::count(view_base, view_base + views, -1));
  out.delta_end.resize(views);
  out.key_tiles.resize(keyframes * tiles);
  out.key_armies.resize(keyframes * tiles);
  out.change_tile.clear();
  out.change_code.clear();
  out.change_army.clear();
  std::vector<uint8_t> changed((tiles + 7) / 8 * 8, 0);  // whole words, the tail 0
  size_t key = 0;
  for (size_t v = 0; v < views; ++v) {
    const uint8_t* view_codes = codes + v * tiles;
    const Army* view_armies = armies + v * tiles;
    if (view_base[v] < 0) {
      std::memcpy(out.key_tiles.data() + key * tiles, view_codes, tiles);
      std::memcpy(out.key_armies.data() + key * tiles, view_armies, tiles * sizeof(Army));
      ++key;
    } else {
      const size_t b = static_cast<size_t>(view_base[v]) * tiles;
      differing_tiles(view_codes, view_armies, codes + b, armies + b, tiles, changed.data());
      // Eight flags a word: a view changes in a few tiles, so most words are 0.
      for (size_t first = 0; first < tiles; first += 8) {
        uint64_t word;
        std::memcpy(&word, changed.data() + first, 8);
        for (; word; word &= word - 1) {
          const size_t t = first + static_cast<size_t>(__builtin_ctzll(word)) / 8;
          out.change_tile.push_back(static_cast<uint16_t>(t));
          out.change_code.push_back(view_codes[t]);
          out.change_army.push_back(view_armies[t]);
        }
      }
    }
    out.delta_end[v] = static_cast<uint32_t>(out.change_tile.size());
  }
}

template <typename Army>
void decode_view_deltas(const ViewDeltaColumns<Army>& in, uint8_t* codes, Army* armies) {
  const size_t tiles = in.tiles;
  size_t keyframes = 0;
  uint32_t end = 0;
  for (size_t v = 0; v < in.views; ++v) {
    const int32_t base = in.view_base[v];
    if (base < -1 || base >= static_cast<int64_t>(v)) {
      refuse(at("view_base", v) + ": " + std::to_string(base) + ", expected -1 (a keyframe) or an earlier view 0.." +
             std::to_string(static_cast<int64_t>(v) - 1));
    }
    const uint32_t next = in.delta_end[v];
    if (next < end || next > in.changes) {
      refuse(at("delta_end", v) + ": " + std::to_string(next) + ", expected " + std::to_string(end) + ".." +
             std::to_string(in.changes));
    }
    if (base < 0) {
      if (next != end) refuse(at("delta_end", v) + ": " + std::to_string(next - end) + " changes of a keyframe");
      ++keyframes;
    }
    end = next;
  }
  if (keyframes != in.keyframes) {
    refuse("view_base: " + std::to_string(keyframes) + " keyframes, key_tiles holds " + std::to_string(in.keyframes));
  }
  if (end != in.changes) {
    refuse("delta_end: the views' changes end at " + std::to_string(end) + ", change_tile holds " +
           std::to_string(in.changes));
  }
  const int64_t bad_key = find_invalid_code(in.key_tiles, in.keyframes * tiles);
  if (bad_key >= 0) {
    refuse("key_tiles: tile code " + std::to_string(in.key_tiles[bad_key]) + ", codes are below " +
           std::to_string(kTileCodes));
  }
  const int64_t bad_code = find_invalid_code(in.change_code, in.changes);
  if (bad_code >= 0) {
    refuse("change_code: tile code " + std::to_string(in.change_code[bad_code]) + ", codes are below " +
           std::to_string(kTileCodes));
  }
  uint16_t highest = 0;
  for (size_t c = 0; c < in.changes; ++c) highest = std::max(highest, in.change_tile[c]);
  if (in.changes && highest >= tiles) {
    refuse("change_tile: tile " + std::to_string(highest) + ", the board has " + std::to_string(tiles));
  }
  if constexpr (std::is_signed_v<Army>) {
    for (const auto& [column, values, count] : {std::tuple{"key_armies", in.key_armies, in.keyframes * tiles},
                                                std::tuple{"change_army", in.change_army, in.changes}}) {
      Army lowest = 0;
      for (size_t i = 0; i < count; ++i) lowest = std::min(lowest, values[i]);
      if (lowest < 0) refuse(std::string(column) + ": army " + std::to_string(lowest) + ", armies are >= 0");
    }
  }
  size_t key = 0;
  for (size_t v = 0; v < in.views; ++v) {
    uint8_t* view_codes = codes + v * tiles;
    Army* view_armies = armies + v * tiles;
    const int32_t base = in.view_base[v];
    if (base < 0) {
      std::memcpy(view_codes, in.key_tiles + key * tiles, tiles);
      std::memcpy(view_armies, in.key_armies + key * tiles, tiles * sizeof(Army));
      ++key;
      continue;
    }
    std::memcpy(view_codes, codes + static_cast<size_t>(base) * tiles, tiles);
    std::memcpy(view_armies, armies + static_cast<size_t>(base) * tiles, tiles * sizeof(Army));
    for (uint32_t c = v ? in.delta_end[v - 1] : 0; c < in.delta_end[v]; ++c) {
      view_codes[in.change_tile[c]] = in.change_code[c];
      view_armies[in.change_tile[c]] = in.change_army[c];
    }
  }
}

template void encode_view_deltas(const uint8_t*, const uint8_t*, size_t, size_t, const int32_t*, ViewDeltas<uint8_t>&);
template void encode_view_deltas(const uint8_t*, const uint16_t*, size_t, size_t, const int32_t*,
                                 ViewDeltas<uint16_t>&);
template void encode_view_deltas(const uint8_t*, const int32_t*, size_t, size_t, const int32_t*, ViewDeltas<int32_t>&);
template void decode_view_deltas(const ViewDeltaColumns<uint8_t>&, uint8_t*, uint8_t*);
template void decode_view_deltas(const ViewDeltaColumns<uint16_t>&, uint8_t*, uint16_t*);
template void decode_view_deltas(const ViewDeltaColumns<int32_t>&, uint8_t*, int32_t*);

}  // namespace grl
