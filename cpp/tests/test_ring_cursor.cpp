// The experience ring and its cursors: order, filters, missed counts under
// overwriting, room under blocking, records without states.
#include <doctest/doctest.h>

#include "buffer_support.hpp"
#include "experience_buffer.hpp"

using grl::testing::kBufferSide;
using grl::testing::record_game;

TEST_CASE("a cursor reads every experience once, in order, with its boards") {
  grl::ExperienceBuffer buffer(kBufferSide, kBufferSide, 64, grl::FullPolicy::kOverwrite);
  auto cursor = buffer.open_cursor(grl::Cursor::kOldest, 0, {});
  record_game(buffer, 7, 5);
  grl::RawBatch batch;
  cursor->read_raw(100, 0.0, batch);
  REQUIRE(batch.size() == 10);
  CHECK(batch.next_sequence == 10);
  CHECK(batch.missed == 0);
  CHECK(batch.states() == 6);  // each board once
  for (size_t i = 0; i < batch.size(); ++i) {
    CHECK(batch.sequence[i] == i);
    CHECK(batch.tick[i] == static_cast<int32_t>(i / 2));
    CHECK(batch.player_id[i] == static_cast<int32_t>(i % 2));
    // The state's armies are its tick, the next state's one more.
    CHECK(batch.state_army[batch.state_index[i] * batch.tiles()] == batch.tick[i]);
    CHECK(batch.state_army[batch.next_state_index[i] * batch.tiles()] == batch.tick[i] + 1);
    CHECK(batch.terminated[i] == (batch.tick[i] == 4));
  }
  CHECK(cursor->position() == 10);
  CHECK(cursor->lag() == 0);
}

TEST_CASE("filters select games, players and ticks") {
  grl::ExperienceBuffer buffer(kBufferSide, kBufferSide, 64, grl::FullPolicy::kOverwrite);
  grl::CursorFilter filter;
  filter.game_ids = {8};
  filter.player_ids = {1};
  filter.min_tick = 2;
  auto cursor = buffer.open_cursor(grl::Cursor::kOldest, 0, filter);
  record_game(buffer, 7, 5);
  record_game(buffer, 8, 5);
  grl::RawBatch batch;
  cursor->read_raw(100, 0.0, batch);
  REQUIRE(batch.size() == 3);
  for (size_t i = 0; i < batch.size(); ++i) {
    CHECK((batch.game_id[i] == 8 && batch.player_id[i] == 1 && batch.tick[i] == static_cast<int32_t>(i) + 2));
  }
}

TEST_CASE("overwriting: a cursor that fell behind is told how many it missed") {
  grl::ExperienceBuffer buffer(kBufferSide, kBufferSide, 8, grl::FullPolicy::kOverwrite, 16);
  auto cursor = buffer.open_cursor(grl::Cursor::kOldest, 0, {});
  record_game(buffer, 7, 10);  // 20 experiences into 8 slots
  grl::RawBatch batch;
  cursor->read_raw(100, 0.0, batch);
  CHECK(batch.size() + batch.missed == 20);
  CHECK(batch.missed >= 12);
  CHECK(batch.sequence.back() == 19);
  CHECK(cursor->total_missed() == batch.missed);
  const grl::BufferStats stats = buffer.stats();
  CHECK((stats.total_appended == 20 && stats.resident == 8 && stats.total_overwritten == 12));
}

TEST_CASE("blocking: no room while an open cursor would be overrun") {
  grl::ExperienceBuffer buffer(kBufferSide, kBufferSide, 8, grl::FullPolicy::kBlock, 16);
  auto cursor = buffer.open_cursor(grl::Cursor::kOldest, 0, {});
  record_game(buffer, 7, 4);  // 8 experiences: full
  CHECK(!buffer.wait_for_room(2, 1, 0.01));
  grl::RawBatch batch;
  cursor->read_raw(4, 0.0, batch);
  CHECK(buffer.wait_for_room(2, 1, 0.01));
  cursor->close();
  CHECK(buffer.wait_for_room(8, 1, 0.01));  // closed cursors hold nothing back
}

TEST_CASE("records without states and decoded reads") {
  grl::ExperienceBuffer buffer(kBufferSide, kBufferSide, 64, grl::FullPolicy::kOverwrite);
  record_game(buffer, 7, 3);
  grl::RawBatch records;
  buffer.open_cursor(grl::Cursor::kOldest, 0, {})->read_raw(100, 0.0, records, false);
  CHECK(records.size() == 6);
  CHECK(records.state_kind.empty());
  CHECK(records.state_index[0] == -1);
  grl::DecodedBatch decoded;
  buffer.open_cursor(grl::Cursor::kAt, 2, {})->read_decoded(100, 0.0, decoded);
  CHECK(decoded.size() == 4);
  CHECK(decoded.state.size() == 4 * grl::kObservationChannels * grl::testing::kBufferTiles);
  CHECK(decoded.action_mask.size() == 4 * grl::testing::kBufferTiles * 4);
}
