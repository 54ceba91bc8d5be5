// Per-player rewards of one tick, shared by live play and imported replays.
#pragma once

#include <cstdint>

#include "game.hpp"

namespace grl {

struct RewardConfig {
  float win = 1.0f;
  float loss = -1.0f;
  float city_captured = 0.1f;
  float city_lost = -0.1f;
  float army_advantage = 0.05f;  // times (A_team - A_others) / (A_team + A_others)
  float land_gained = 0.0f;      // per tile gained this tick (negative when lost)
  float general_captured = 0.0f;
};

// What the rewards of a tick compare with: each player as the tick began.
struct TickStart {
  uint8_t alive[kMaxPlayers];
  int32_t land[kMaxPlayers];
};

TickStart tick_start(const Game& g);

// Writes num_players() rewards for the tick just played (0 for players dead
// before it). Win and loss go by team: the winning team's players win; an
// eliminated player loses once no teammate is left alive.
void compute_rewards(const Game& g, const RewardConfig& rc, const TickStart& before, float* out);

}  // namespace grl
