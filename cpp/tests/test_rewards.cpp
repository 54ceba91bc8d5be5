// Rewards of a tick: win and loss, cities, land and the army advantage.
#include <doctest/doctest.h>

#include "board.hpp"
#include "game.hpp"
#include "rewards.hpp"

using grl::testing::action;
using grl::testing::Board;
using grl::testing::kRight;

TEST_CASE("capturing the last general wins; the victim loses") {
  Board b(1, 3, 2);
  b.set(0, 0, grl::kPlain, 0, 10).set(0, 1, grl::kGeneral, 1, 2).set(0, 2, grl::kGeneral, 0, 1);
  grl::Game g = b.game();
  grl::RewardConfig rc;
  rc.army_advantage = 0;
  rc.general_captured = 0.25f;
  const grl::TickStart before = grl::tick_start(g);
  const int32_t moves[2] = {action(g, 0, 0, kRight), grl::kPass};
  g.step(moves);
  float rewards[2];
  grl::compute_rewards(g, rc, before, rewards);
  CHECK(rewards[0] == doctest::Approx(rc.win + rc.general_captured));
  CHECK(rewards[1] == doctest::Approx(rc.loss));
}

TEST_CASE("land gained and the army advantage") {
  Board b(1, 5, 2);
  b.set(0, 0, grl::kGeneral, 0, 9).set(0, 4, grl::kGeneral, 1, 3);
  grl::Game g = b.game();
  grl::RewardConfig rc;
  rc.land_gained = 0.5f;
  const grl::TickStart before = grl::tick_start(g);
  const int32_t moves[2] = {action(g, 0, 0, kRight), grl::kPass};
  g.step(moves);  // player 0 takes a tile; armies after the tick: 0 has 1 + 8, 1 has 3
  float rewards[2];
  grl::compute_rewards(g, rc, before, rewards);
  const float total = static_cast<float>(g.army_of(0) + g.army_of(1));
  const float advantage = static_cast<float>(g.army_of(0) - g.army_of(1)) / total;
  CHECK(rewards[0] == doctest::Approx(0.5f + rc.army_advantage * advantage));
  CHECK(rewards[1] == doctest::Approx(-rc.army_advantage * advantage));
}
