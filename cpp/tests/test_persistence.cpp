// Saving and restoring a buffer's contents (export_resident / import_resident),
// appending raw batches, and the raw-batch checks both go through.
#include <doctest/doctest.h>

#include <stdexcept>

#include "buffer_support.hpp"
#include "experience_buffer.hpp"

using grl::testing::kBufferSide;
using grl::testing::record_game;

TEST_CASE("exported contents restore into an empty buffer, numbering kept") {
  grl::ExperienceBuffer source(kBufferSide, kBufferSide, 16, grl::FullPolicy::kOverwrite, 32);
  record_game(source, 7, 12);  // 24 experiences: the 16 newest are resident
  grl::RawBatch saved;
  source.export_resident(saved);
  REQUIRE(saved.size() == 16);
  CHECK(saved.sequence.front() == 8);
  CHECK(saved.next_sequence == 24);

  grl::ExperienceBuffer restored(kBufferSide, kBufferSide, 16, grl::FullPolicy::kOverwrite, 32);
  restored.import_resident(saved);
  CHECK(restored.head() == 24);
  CHECK(restored.oldest() == 8);
  grl::RawBatch again;
  restored.export_resident(again);
  REQUIRE(again.size() == saved.size());
  for (size_t i = 0; i < again.size(); ++i) {
    CHECK(again.sequence[i] == saved.sequence[i]);
    CHECK(again.tick[i] == saved.tick[i]);
    CHECK(again.state_army[again.state_index[i] * again.tiles()] ==
          saved.state_army[saved.state_index[i] * saved.tiles()]);
  }
  CHECK_THROWS_WITH_AS(restored.import_resident(saved), doctest::Contains("only load into an empty buffer"),
                       std::invalid_argument);
}

TEST_CASE("raw batches append with new sequence numbers") {
  grl::ExperienceBuffer source(kBufferSide, kBufferSide, 64, grl::FullPolicy::kOverwrite);
  record_game(source, 7, 3);
  grl::RawBatch batch;
  source.export_resident(batch);
  grl::ExperienceBuffer target(kBufferSide, kBufferSide, 64, grl::FullPolicy::kBlock);
  record_game(target, 9, 1);
  CHECK(target.append_raw(batch) == 2);
  CHECK(target.head() == 2 + batch.size());
}

TEST_CASE("bad raw batches are refused naming the problem") {
  grl::ExperienceBuffer source(kBufferSide, kBufferSide, 64, grl::FullPolicy::kOverwrite);
  record_game(source, 7, 3);
  grl::RawBatch good;
  source.export_resident(good);
  grl::ExperienceBuffer target(kBufferSide, kBufferSide, 64, grl::FullPolicy::kOverwrite);
  auto refused = [&](auto change, const char* message) {
    grl::RawBatch bad = good;
    change(bad);
    CHECK_THROWS_WITH_AS(target.append_raw(bad), doctest::Contains(message), std::invalid_argument);
  };
  refused([](grl::RawBatch& b) { b.reward.pop_back(); }, "columns differ in length: reward");
  refused([](grl::RawBatch& b) { b.state_index[1] = 99; }, "row 1: state_index refers to a state outside");
  refused([](grl::RawBatch& b) { b.player_id[0] = grl::kMaxPlayers; }, "row 0: player_id 16 outside 0..15");
  refused([](grl::RawBatch& b) { b.state_kind[5] = 9; }, "state 0 tile 5: invalid kind 9");
  refused([](grl::RawBatch& b) { b.state_owner[3] = -2; }, "state 0 tile 3: invalid owner -2");
  refused([](grl::RawBatch& b) { b.width = 5; }, "batch board is 4x5");
  CHECK(target.head() == 0);  // nothing of a refused batch is kept
}
