// TFRecord framing: the CRC masking and the framed Example records the
// encoder writes, with views made from state tables or given as tables.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "compact_observation.hpp"
#include "tfrecord.hpp"
#include "thread_pool.hpp"

namespace tf = grl::tfrecord;

namespace {

uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

TEST_CASE("the mask rotates right by 15 and adds the delta") {
  const uint32_t crc = 0x12345678u;
  CHECK(tf::mask_crc(crc) == ((crc >> 15 | crc << 17) + 0xa282ead8u));
}

TEST_CASE("framed records carry their length, data and checksums") {
  const tf::ExampleEncoder encoder({"tick"}, {{"state", tf::ListKind::kBytes, 3}});
  const int64_t ticks[2] = {5, 300};
  const int64_t* varints[1] = {ticks};
  const uint8_t table[6] = {1, 2, 3, 4, 5, 6};
  const int32_t index[2] = {1, 0};
  const tf::RowSource rows[1] = {{table, 2, index}};
  std::vector<uint8_t> out(2 * encoder.max_record_bytes());
  int64_t lengths[2];
  const size_t written = encoder.encode(2, varints, rows, out.data(), lengths);
  CHECK(written == static_cast<size_t>(lengths[0] + lengths[1]));
  size_t at = 0;
  for (int r = 0; r < 2; ++r) {
    uint64_t length;
    std::memcpy(&length, out.data() + at, 8);
    CHECK(length + 16 == static_cast<uint64_t>(lengths[r]));
    CHECK(load32(out.data() + at + 8) == tf::mask_crc(grl::crc32c(out.data() + at, 8)));
    const uint8_t* data = out.data() + at + 12;
    CHECK(load32(data + length) == tf::mask_crc(grl::crc32c(data, length)));
    // The row's payload appears in the record: row 1 first, then row 0.
    const std::string record(reinterpret_cast<const char*>(data), length);
    CHECK(record.find(std::string(reinterpret_cast<const char*>(table + 3 * index[r]), 3)) != std::string::npos);
    CHECK(record.find("tick") != std::string::npos);
    at += lengths[r];
  }
}

TEST_CASE("records made from state tables equal those of the same views given as tables, on any threads") {
  // Random boards (wide armies among them) and records naming a state, a next state and a player.
  const int height = 7, width = 9, states = 6, players = 2;
  const size_t tiles = static_cast<size_t>(height) * width;
  std::vector<uint8_t> kind(states * tiles);
  std::vector<int16_t> owner(states * tiles);
  std::vector<int32_t> army(states * tiles);
  uint64_t seed = 12345;
  auto next = [&seed](uint64_t bound) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (seed >> 33) % bound;
  };
  for (size_t t = 0; t < kind.size(); ++t) {
    kind[t] = static_cast<uint8_t>(next(4));
    owner[t] = static_cast<int16_t>(static_cast<int>(next(players + 1)) - 1);
    const uint64_t pick = next(10);
    army[t] = static_cast<int32_t>(pick < 5 ? next(4) : pick < 9 ? next(2000) : (int64_t{1} << 28) + next(1000));
  }
  const size_t n = 300;  // above the size a pool splits
  std::vector<int32_t> state_index(n), next_state_index(n), player(n);
  std::vector<int64_t> ticks(n);
  for (size_t i = 0; i < n; ++i) {
    state_index[i] = static_cast<int32_t>(next(states));
    next_state_index[i] = static_cast<int32_t>(next(states));
    player[i] = static_cast<int32_t>(next(players));
    ticks[i] = static_cast<int64_t>(i * 977);
  }
  // The same views as tables: values (uint64) and packed masks, row by row.
  std::vector<uint64_t> values(n * tiles), next_values(n * tiles);
  std::vector<uint8_t> masks(n * grl::packed_mask_bytes(tiles));
  std::vector<uint8_t> codes(tiles), scratch(tiles * grl::kObservationScratchPerTile);
  std::vector<int32_t> armies(tiles);
  for (size_t i = 0; i < n; ++i) {
    for (const auto& [index, out] : {std::pair{&state_index, &values}, std::pair{&next_state_index, &next_values}}) {
      const size_t at = static_cast<size_t>((*index)[i]) * tiles;
      const grl::StateView view{height, width, kind.data() + at, owner.data() + at, army.data() + at};
      grl::encode_compact(view, player[i], true, codes.data(), armies.data(), scratch.data());
      for (size_t t = 0; t < tiles; ++t) {
        (*out)[i * tiles + t] = static_cast<uint64_t>(armies[t]) << grl::kViewArmyShift | codes[t];
      }
    }
    const size_t at = static_cast<size_t>(state_index[i]) * tiles;
    const grl::StateView view{height, width, kind.data() + at, owner.data() + at, army.data() + at};
    grl::encode_packed_action_mask(view, player[i], masks.data() + i * grl::packed_mask_bytes(tiles));
  }
  const size_t mask_bytes = grl::packed_mask_bytes(tiles);
  const tf::ExampleEncoder tabled(
      {"tick"}, {{"state_view", tf::ListKind::kInt64, 8 * tiles, 8},
                 {"next_state_view", tf::ListKind::kInt64, 8 * tiles, 8},
                 {"action_mask", tf::ListKind::kBytes, mask_bytes}});
  const tf::ExampleEncoder made(
      {"tick"}, {{"state_view", tf::ListKind::kInt64, 8 * tiles, 8, tf::RowContent::kStateView},
                 {"next_state_view", tf::ListKind::kInt64, 8 * tiles, 8, tf::RowContent::kNextStateView},
                 {"action_mask", tf::ListKind::kBytes, mask_bytes, 0, tf::RowContent::kStateMask}});
  const int64_t* varints[1] = {ticks.data()};
  const tf::RowSource tables[3] = {{reinterpret_cast<const uint8_t*>(values.data()), n, nullptr},
                                   {reinterpret_cast<const uint8_t*>(next_values.data()), n, nullptr},
                                   {masks.data(), n, nullptr}};
  std::vector<uint8_t> want(n * tabled.max_record_bytes());
  std::vector<int64_t> want_lengths(n);
  want.resize(tabled.encode(n, varints, tables, want.data(), want_lengths.data()));
  const tf::ViewTables views{{height, width, kind.data(), owner.data(), army.data()},
                             state_index.data(),
                             next_state_index.data(),
                             player.data()};
  const tf::RowSource unused[3] = {};
  CHECK_THROWS_AS(made.encode(n, varints, unused, want.data(), want_lengths.data()), std::invalid_argument);
  const tf::ViewTables other_board{{width, height + 1, kind.data(), owner.data(), army.data()},
                                   state_index.data(),
                                   next_state_index.data(),
                                   player.data()};
  CHECK_THROWS_AS(made.encode(n, varints, unused, want.data(), want_lengths.data(), &other_board),
                  std::invalid_argument);
  for (const int threads : {1, 2, 3}) {
    grl::ThreadPool pool(threads);
    std::vector<uint8_t> got(n * made.max_record_bytes());
    std::vector<int64_t> lengths(n);
    got.resize(made.encode(n, varints, unused, got.data(), lengths.data(), &views, &pool));
    CHECK(got == want);
    CHECK(lengths == want_lengths);
  }
}

TEST_CASE("view values' varints: the CPU's version equals the portable one for every army size") {
  // Tiles of every code, armies from one byte to the widest, mixed within blocks of eight.
  std::vector<uint8_t> codes;
  std::vector<int32_t> armies;
  uint64_t state = 12345;
  const int32_t widths[] = {0, 3, 4, 127, 511, 512, 4095, 1 << 20, 0x7FFFFFFF};
  for (int t = 0; t < 4000; ++t) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    codes.push_back(static_cast<uint8_t>((state >> 33) % grl::kTileCodes));
    const int32_t width = widths[(state >> 40) % (t < 2000 ? 5 : 9)];  // the first half all short
    armies.push_back(width == 0 ? 0 : static_cast<int32_t>((state >> 13) % static_cast<uint64_t>(width) + 1));
  }
  for (const size_t n : {size_t{0}, size_t{7}, size_t{8}, size_t{17}, size_t{2000}, size_t{4000}}) {
    std::vector<uint8_t> fast(10 * n + 16), portable(10 * n + 16);
    const size_t fast_size = tf::put_view_values(fast.data(), codes.data(), armies.data(), n) - fast.data();
    const size_t portable_size =
        tf::put_view_values_portable(portable.data(), codes.data(), armies.data(), n) - portable.data();
    REQUIRE(fast_size == portable_size);
    CHECK(std::memcmp(fast.data(), portable.data(), fast_size) == 0);
    // And the bytes are the values' varints.
    const uint8_t* p = portable.data();
    for (size_t t = 0; t < n; ++t) {
      uint64_t value = 0;
      for (int shift = 0;; shift += 7) {
        value |= static_cast<uint64_t>(*p & 0x7F) << shift;
        if (!(*p++ & 0x80)) break;
      }
      REQUIRE(value == (static_cast<uint64_t>(armies[t]) << grl::kViewArmyShift | codes[t]));
    }
    CHECK(p == portable.data() + portable_size);
  }
}
