// Views coded as keyframes and deltas: bases only backward, the coded views
// rebuilt exactly, and hostile columns refused before anything is written.
#include <doctest/doctest.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "view_deltas.hpp"

namespace {

constexpr size_t kTiles = 6;

TEST_CASE("each view is coded against the earlier view of a row's link; no link, a keyframe") {
  // Rows (state view, next state view): 0 -> 1 -> 2 in order, 4 -> 3 backward, 5 alone.
  const std::vector<int32_t> state{0, 1, 4, 5};
  const std::vector<int32_t> next{1, 2, 3, 5};
  CHECK(grl::choose_view_bases(state.data(), next.data(), 4, 6) == std::vector<int32_t>{-1, 0, 1, -1, 3, -1});
}

TEST_CASE("coded views rebuild every view, whatever the army width") {
  const std::vector<uint8_t> codes{2, 2, 0, 0, 6, 7,  //
                                   2, 3, 0, 0, 6, 7,  //
                                   9, 9, 9, 9, 9, 9};
  const std::vector<int32_t> armies{0, 1, 0, 0, 70000, 5,  //
                                    0, 1, 0, 0, 70001, 5,  //
                                    1, 2, 3, 4, 5, 6};
  const std::vector<int32_t> base{-1, 0, 1};
  grl::ViewDeltas<int32_t> coded;
  grl::encode_view_deltas(codes.data(), armies.data(), 3, kTiles, base.data(), coded);
  CHECK(coded.delta_end == std::vector<uint32_t>{0, 2, 8});
  CHECK(coded.change_tile == std::vector<uint16_t>{1, 4, 0, 1, 2, 3, 4, 5});
  CHECK(coded.key_tiles.size() == kTiles);
  std::vector<uint8_t> got_codes(codes.size());
  std::vector<int32_t> got_armies(armies.size());
  const grl::ViewDeltaColumns<int32_t> in{3,
                                          kTiles,
                                          1,
                                          coded.change_tile.size(),
                                          base.data(),
                                          coded.delta_end.data(),
                                          coded.key_tiles.data(),
                                          coded.key_armies.data(),
                                          coded.change_tile.data(),
                                          coded.change_code.data(),
                                          coded.change_army.data()};
  grl::decode_view_deltas(in, got_codes.data(), got_armies.data());
  CHECK(got_codes == codes);
  CHECK(got_armies == armies);

  SUBCASE("a base forward, a tile off the board or a negative army is refused") {
    std::vector<int32_t> forward{-1, 2, 1};
    grl::ViewDeltaColumns<int32_t> bad = in;
    bad.view_base = forward.data();
    CHECK_THROWS_AS(grl::decode_view_deltas(bad, got_codes.data(), got_armies.data()), std::invalid_argument);
    std::vector<uint16_t> off = coded.change_tile;
    off[3] = kTiles;
    bad = in;
    bad.change_tile = off.data();
    CHECK_THROWS_AS(grl::decode_view_deltas(bad, got_codes.data(), got_armies.data()), std::invalid_argument);
    std::vector<int32_t> negative = coded.change_army;
    negative[0] = -1;
    bad = in;
    bad.change_army = negative.data();
    CHECK_THROWS_AS(grl::decode_view_deltas(bad, got_codes.data(), got_armies.data()), std::invalid_argument);
  }
}

}  // namespace
