// Replays: run to their last event, bounded in cost.
#include <doctest/doctest.h>

#include <stdexcept>
#include <vector>

#include "board.hpp"
#include "game.hpp"
#include "replay.hpp"

using grl::testing::Board;

TEST_CASE("replay runs to its last event") {
  Board b(1, 4, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(0, 3, grl::kGeneral, 1, 1);
  grl::Game g = b.game();
  const std::vector<grl::ReplayMove> moves = {{0, 0, 1, false, 2}, {0, 1, 2, false, 3}};
  const grl::ReplayTrace trace = grl::run_replay(g, moves, {}, 100);
  CHECK((trace.end_tick == 4 && !trace.over));
  CHECK((trace.ticks.size() == 4 && trace.land.size() == 8));
  CHECK((trace.land[2 * 1 + 0] == 1 && trace.land[2 * 2 + 0] == 2));  // after ticks 2 and 3
  CHECK((trace.snapshot_ticks.size() == 1 && trace.snapshot_ticks[0] == 4));
  CHECK((trace.snapshot_owner[0][1] == 0 && trace.snapshot_owner[0][2] == grl::kNeutral));
}

TEST_CASE("replay cost is bounded") {
  Board b(1, 4, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(0, 3, grl::kGeneral, 1, 1);
  grl::Game g = b.game();
  const std::vector<grl::ReplayMove> idle = {{0, 0, 1, false, grl::kMaxIdleTicks + 1}};
  CHECK_THROWS_WITH_AS(grl::run_replay(g, idle, {}, 100), doctest::Contains("idle ticks"), std::invalid_argument);
  CHECK(g.tick() == 0);  // refused before simulating
  Board large(grl::kMaxBoardSide, grl::kMaxBoardSide, 2);
  large.set(0, 0, grl::kGeneral, 0, 1).set(9, 9, grl::kGeneral, 1, 1);
  grl::Game big = large.game();
  const std::vector<grl::ReplayMove> late = {{0, 0, 1, false, 5000}};
  CHECK_THROWS_WITH_AS(grl::run_replay(big, late, {}, 100), doctest::Contains("snapshot_every"), std::invalid_argument);  // 51 snapshots of 2^20 tiles
  CHECK(big.tick() == 0);
}
