// Player views of a board: fog (3x3 around owned tiles), the 9 observation
// channels, the obstacles channel, the action mask and open directions.
#include <doctest/doctest.h>

#include <vector>

#include "board.hpp"
#include "game.hpp"
#include "observation.hpp"

using grl::testing::Board;

namespace {

// 1 x 6: G0 (5) | 0:3 | mountain | neutral:2 | city (neutral 40) | G1 (7)
Board sample_board() {
  Board b(1, 6, 2);
  b.set(0, 0, grl::kGeneral, 0, 5).set(0, 1, grl::kPlain, 0, 3).set(0, 2, grl::kMountain, grl::kNeutral, 0);
  b.set(0, 3, grl::kPlain, grl::kNeutral, 2).set(0, 4, grl::kCity, grl::kNeutral, 40);
  b.set(0, 5, grl::kGeneral, 1, 7);
  return b;
}

// Channel c of a 1 x n board's observation, as a vector.
std::vector<float> channel(const std::vector<float>& obs, int c, int n) {
  return {obs.begin() + c * n, obs.begin() + (c + 1) * n};
}

}  // namespace

TEST_CASE("fog: a player sees one tile around its own") {
  const grl::Game g = sample_board().game();
  std::vector<uint8_t> visible(6);
  g.visibility(0, visible.data());
  CHECK(visible == std::vector<uint8_t>{1, 1, 1, 0, 0, 0});
  g.visibility(1, visible.data());
  CHECK(visible == std::vector<uint8_t>{0, 0, 0, 0, 1, 1});
}

TEST_CASE("the channels of player 0") {
  const grl::Game g = sample_board().game();
  grl::ObservationConfig config;
  config.army_scale = 10.0f;
  std::vector<float> obs(grl::kObservationChannels * 6);
  std::vector<uint8_t> scratch(6 * grl::kObservationScratchPerTile);
  grl::encode_observation(g.view(), 0, config, obs.data(), scratch.data());
  CHECK(channel(obs, 0, 6) == std::vector<float>{0.5f, 0.3f, 0, 0, 0, 0});  // own armies / scale
  CHECK(channel(obs, 1, 6) == std::vector<float>(6, 0.0f));                 // no enemy in sight
  CHECK(channel(obs, 2, 6) == std::vector<float>{1, 1, 0, 0, 0, 0});        // own land
  CHECK(channel(obs, 5, 6) == std::vector<float>{1, 0, 0, 0, 0, 0});        // cities and generals seen
  CHECK(channel(obs, 6, 6) == std::vector<float>{0, 0, 1, 0, 0, 0});        // mountains seen
  CHECK(channel(obs, 7, 6) == std::vector<float>{1, 1, 1, 0, 0, 0});        // visible
  CHECK(channel(obs, 8, 6) == std::vector<float>{0, 0, 0, 1, 1, 1});        // fog

  config.obstacles = true;
  std::vector<float> with_obstacles(config.channels() * 6);
  grl::encode_observation(g.view(), 0, config, with_obstacles.data(), scratch.data());
  CHECK(channel(with_obstacles, grl::kObservationChannels, 6) == std::vector<float>{0, 0, 0, 0, 1, 0});
}

TEST_CASE("log scaling saturates at the scale") {
  const grl::Game g = sample_board().game();
  grl::ObservationConfig config;
  config.scale = grl::ObservationConfig::kLog;
  config.army_scale = 4.0f;
  std::vector<float> obs(grl::kObservationChannels * 6);
  std::vector<uint8_t> scratch(6 * grl::kObservationScratchPerTile);
  grl::encode_observation(g.view(), 1, config, obs.data(), scratch.data());
  CHECK(obs[5] == 1.0f);  // log1p(7) / log1p(4) > 1: capped
}

TEST_CASE("the action mask: own tiles of 2 or more armies, toward open neighbours") {
  const grl::Game g = sample_board().game();
  std::vector<uint8_t> mask(6 * 4);
  grl::encode_action_mask(g.view(), 0, mask.data());
  // The general (5) may move right onto its own tile; the tile with 3 may not
  // move onto the mountain but may move left. Up and down are off the board.
  CHECK(std::vector<uint8_t>(mask.begin(), mask.begin() + 8) == std::vector<uint8_t>{0, 0, 0, 1, 0, 0, 1, 0});
  int legal = 0;
  for (uint8_t m : mask) legal += m;
  CHECK(legal == 2);
}

TEST_CASE("open directions: on the board and not into a mountain") {
  const Board b = sample_board();
  std::vector<uint8_t> open(6);
  grl::compute_open_directions(b.spec.kind.data(), 1, 6, open.data());
  const uint8_t left = 1 << 2, right = 1 << 3;
  CHECK(open == std::vector<uint8_t>{right, left, left | right, right, left | right, left});
  CHECK(grl::neighbor(0, 0, 1, 6) == -1);  // up, off the board
  CHECK(grl::neighbor(0, 3, 1, 6) == 1);
}
