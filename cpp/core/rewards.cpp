#include "rewards.hpp"

namespace grl {

TickStart tick_start(const Game& g) {
  TickStart s{};
  for (int p = 0; p < g.num_players(); ++p) {
    s.alive[p] = g.alive(p);
    s.land[p] = g.land_of(p);
  }
  return s;
}

void compute_rewards(const Game& g, const RewardConfig& rc, const TickStart& before, float* out) {
  const int players = g.num_players();
  const TickEvents& ev = g.events();
  int64_t total_army = 0;
  for (int p = 0; p < players; ++p) total_army += g.army_of(p);
  const int winning_team = g.winner();
  for (int p = 0; p < players; ++p) {
    float r = 0.0f;
    if (before.alive[p]) {
      int64_t team_army = 0;
      bool team_alive = false;
      for (int q = 0; q < players; ++q) {
        if (g.team(q) != g.team(p)) continue;
        team_army += g.army_of(q);
        team_alive |= g.alive(q);
      }
      if (ev.eliminated[p] && !team_alive) r += rc.loss;
      if (g.team(p) == winning_team) r += rc.win;
      r += rc.city_captured * ev.cities_gained[p] + rc.city_lost * ev.cities_lost[p];
      r += rc.general_captured * ev.generals_captured[p];
      r += rc.land_gained * static_cast<float>(g.land_of(p) - before.land[p]);
      if (total_army > 0) {
        r += rc.army_advantage * static_cast<float>(2 * team_army - total_army) / static_cast<float>(total_army);
      }
    }
    out[p] = r;
  }
}

}  // namespace grl
