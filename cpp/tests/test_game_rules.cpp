// The generals.io rules of a Game: moves, combat, captures, growth, move order,
// illegal moves, truncation, fog and board checks.
#include <doctest/doctest.h>

#include <stdexcept>
#include <vector>

#include "board.hpp"
#include "game.hpp"
#include "observation.hpp"

using grl::testing::action;
using grl::testing::Board;
using grl::testing::kDown;
using grl::testing::kLeft;
using grl::testing::kRight;
using grl::testing::kUp;

TEST_CASE("moves and combat") {
  // row 0: G0 | 0:7 | 1:3 | neutral:6 | G1
  Board b(1, 6, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(0, 1, grl::kPlain, 0, 7).set(0, 2, grl::kPlain, 1, 3);
  b.set(0, 3, grl::kPlain, grl::kNeutral, 6).set(0, 5, grl::kGeneral, 1, 1);

  grl::Game half = b.game();
  const int32_t half_move[2] = {action(half, 0, 1, kRight, true), grl::kPass};
  half.step(half_move);  // keeps ceil(7/2) = 4, moves 3 onto 3: a tie
  CHECK(half.army()[1] == 4);
  CHECK((half.owner()[2] == 1 && half.army()[2] == 0));

  grl::Game full = b.game();
  const int32_t full_move[2] = {action(full, 0, 1, kRight), grl::kPass};
  full.step(full_move);  // moves 6 onto 3: takes the tile with 3
  CHECK(full.army()[1] == 1);
  CHECK((full.owner()[2] == 0 && full.army()[2] == 3));
  CHECK((full.land_of(0) == 3 && full.land_of(1) == 1));
  CHECK((full.army_of(0) == 1 + 1 + 3 && full.army_of(1) == 1));
  CHECK(full.tick() == 1);
}

TEST_CASE("general capture") {
  Board b(2, 3, 2);
  b.set(0, 0, grl::kPlain, 0, 10).set(0, 1, grl::kGeneral, 1, 2).set(0, 2, grl::kPlain, 1, 5);
  b.set(1, 0, grl::kGeneral, 0, 1).set(1, 2, grl::kPlain, 1, 4);
  grl::Game g = b.game();
  const int32_t moves[2] = {action(g, 0, 0, kRight), grl::kPass};
  CHECK(g.step(moves));
  CHECK((g.owner()[1] == 0 && g.army()[1] == 7 && g.kind()[1] == grl::kCity));
  CHECK((g.owner()[2] == 0 && g.army()[2] == 3));  // 5 halved, rounding up
  CHECK((g.owner()[5] == 0 && g.army()[5] == 2));  // 4 halved
  CHECK((g.over() && g.done() && !g.truncated() && g.winner() == 0));
  CHECK((g.death_order().size() == 1 && g.death_order()[0] == 1));
  CHECK(g.generals()[1] == -1);
  CHECK((g.events().generals_captured[0] == 1 && g.events().eliminated[1] == 1));
}

TEST_CASE("growth") {
  Board b(2, 3, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(0, 1, grl::kCity, 0, 10).set(0, 2, grl::kCity, grl::kNeutral, 40);
  b.set(1, 0, grl::kPlain, 0, 3).set(1, 2, grl::kGeneral, 1, 1);
  grl::Game g = b.game();
  const int32_t pass[2] = {grl::kPass, grl::kPass};
  g.step(pass);
  CHECK((g.army()[0] == 1 && g.army()[1] == 10));  // odd tick: nothing grows
  g.step(pass);
  CHECK((g.army()[0] == 2 && g.army()[1] == 11 && g.army()[2] == 40 && g.army()[3] == 3));
  while (g.tick() < 50) g.step(pass);
  CHECK((g.army()[0] == 27 && g.army()[1] == 36 && g.army()[2] == 40 && g.army()[3] == 4));
  CHECK(g.army_of(0) == 27 + 36 + 4);
}

TEST_CASE("move order flips with tick parity") {
  // G0 | 0:5 | neutral:3 | 1:3 | G1, both players move into the middle tile
  Board b(1, 5, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(0, 1, grl::kPlain, 0, 5).set(0, 2, grl::kPlain, grl::kNeutral, 3);
  b.set(0, 3, grl::kPlain, 1, 3).set(0, 4, grl::kGeneral, 1, 1);
  const int32_t pass[2] = {grl::kPass, grl::kPass};

  grl::Game even = b.game();
  const int32_t moves[2] = {action(even, 0, 1, kRight), action(even, 0, 3, kLeft)};
  even.step(moves);  // player 0 first
  CHECK((even.owner()[2] == 1 && even.army()[2] == 1));

  grl::Game odd = b.game();
  odd.step(pass);
  odd.step(moves);  // player 1 first
  CHECK((odd.owner()[2] == 0 && odd.army()[2] == 3));
}

TEST_CASE("illegal moves") {
  Board b(2, 2, 2);
  b.set(0, 0, grl::kGeneral, 0, 5).set(0, 1, grl::kMountain, grl::kNeutral, 0);
  b.set(1, 1, grl::kGeneral, 1, 1);
  grl::Game g = b.game();
  const int32_t bad[][2] = {
      {action(g, 0, 0, kRight), grl::kPass},  // into a mountain
      {action(g, 0, 0, kUp), action(g, 1, 1, kUp)},  // off the board; army of 1
      {-7, g.num_actions()},  // out of range
      {action(g, 1, 1, kLeft), grl::kPass},  // not player 0's tile
  };
  for (const auto& moves : bad) g.step(moves);
  CHECK((g.illegal_moves(0) == 4 && g.illegal_moves(1) == 2));
  CHECK((g.army()[0] == 7 && g.owner()[2] == grl::kNeutral));  // grew at ticks 2 and 4, never moved
  CHECK((g.move_is_legal(0, 0, kDown) && !g.move_is_legal(0, 0, kRight)));
  CHECK((!g.move_is_legal(0, 0, kUp) && !g.move_is_legal(1, 0, kDown)));
  CHECK((!g.move_is_legal(0, -1, kDown) && !g.move_is_legal(0, 4, kDown)));
  CHECK((!g.move_is_legal(0, 0, 4) && !g.move_is_legal(0, 0, -1)));
}

TEST_CASE("truncation and visibility") {
  Board b(4, 4, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(3, 3, grl::kGeneral, 1, 1);
  grl::Game g = b.game(3);
  const int32_t pass[2] = {grl::kPass, grl::kPass};
  CHECK((!g.step(pass) && !g.step(pass) && g.step(pass)));
  CHECK((g.truncated() && !g.over() && g.winner() == -1));

  std::vector<uint8_t> seen(g.num_tiles());
  g.visibility(0, seen.data());
  int count = 0;
  for (uint8_t s : seen) count += s;
  CHECK((count == 4 && seen[0] && seen[1] && seen[4] && seen[5]));
}

TEST_CASE("bad boards throw") {
  Board b(2, 2, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(1, 1, grl::kGeneral, 1, 1);
  grl::MapSpec wrong_size = b.spec;
  wrong_size.army.pop_back();
  CHECK_THROWS_WITH_AS((void)grl::Game(wrong_size), doctest::Contains("army has 3 tiles, expected 4"), std::invalid_argument);
  grl::MapSpec owned_mountain = b.spec;
  owned_mountain.kind[1] = grl::kMountain;
  owned_mountain.owner[1] = 0;
  CHECK_THROWS_WITH_AS((void)grl::Game(owned_mountain), doctest::Contains("mountain tile 1 cannot be owned"), std::invalid_argument);
  grl::MapSpec unowned_general = b.spec;
  unowned_general.owner[3] = 0;
  CHECK_THROWS_WITH_AS((void)grl::Game(unowned_general), doctest::Contains("must be a general owned by player 1"), std::invalid_argument);
}

TEST_CASE("armies saturate") {
  Board b(1, 3, 2);
  b.set(0, 0, grl::kGeneral, 0, grl::kMaxArmy).set(0, 1, grl::kPlain, 0, grl::kMaxArmy - 1);
  b.set(0, 2, grl::kGeneral, 1, 1);
  grl::Game g = b.game();
  for (int t = 0; t < 50; ++t) g.advance();
  CHECK((g.army()[0] == grl::kMaxArmy && g.army()[1] == grl::kMaxArmy));
  CHECK(g.army_of(0) == 2 * int64_t{grl::kMaxArmy});
  CHECK(g.apply_move(0, 1, 0, false));  // a merge saturates too
  CHECK((g.army()[0] == grl::kMaxArmy && g.army()[1] == 1 && g.army_of(0) == int64_t{grl::kMaxArmy} + 1));
}

// Any width: the rows it keeps are sized by the board (they were 1024-byte stack arrays).
TEST_CASE("visibility of a wide board") {
  const int width = 3000;
  std::vector<int16_t> owner(2 * width, grl::kNeutral);
  owner[width - 1] = owner[width + 1500] = 0;
  const std::vector<uint8_t> kind(2 * width, grl::kPlain);
  const std::vector<int32_t> army(2 * width, 1);
  std::vector<uint8_t> visible(2 * width, 9);
  grl::compute_visibility({2, width, kind.data(), owner.data(), army.data()}, 0, visible.data());
  int seen = 0;
  for (int t = 0; t < 2 * width; ++t) seen += visible[t];
  CHECK(seen == 4 + 6);
  CHECK((visible[width - 2] && visible[2 * width - 1] && visible[1499] && visible[width + 1501]));
}
