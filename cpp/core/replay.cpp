#include "replay.hpp"

#include <algorithm>
#include <string>

namespace grl {

namespace {

void snapshot(const Game& game, ReplayTrace& trace) {
  const int n = game.num_tiles();
  std::vector<int16_t> owner(game.owner(), game.owner() + n);
  for (int t = 0; t < n; ++t) {
    if (game.kind()[t] == kMountain) owner[t] = -2;
  }
  trace.snapshot_ticks.push_back(game.tick());
  trace.snapshot_owner.push_back(std::move(owner));
  trace.snapshot_army.emplace_back(game.army(), game.army() + n);
}

}  // namespace

ReplayTrace run_replay(Game& game, const std::vector<ReplayMove>& moves,
                       const std::vector<ReplayAfk>& afks, int snapshot_every) {
  ReplayTrace trace;
  const int players = game.num_players();
  trace.num_players = players;
  std::vector<int64_t> turns;
  for (const auto& m : moves) turns.push_back(m.turn);
  for (const auto& a : afks) turns.push_back(a.turn);
  std::sort(turns.begin(), turns.end());
  int64_t last_event = 0;
  for (const int64_t turn : turns) {
    if (turn - last_event > kMaxIdleTicks) {
      throw std::invalid_argument("no recorded event between ticks " + std::to_string(last_event) + " and " +
                                  std::to_string(turn) + " (at most " + std::to_string(kMaxIdleTicks) +
                                  " idle ticks are replayed)");
    }
    last_event = std::max(last_event, turn);
  }
  // The run ends by tick last_event + 1, with one last snapshot.
  const int64_t snapshots = (snapshot_every > 0 ? (last_event + 1) / snapshot_every : 0) + 1;
  if (snapshots * game.num_tiles() > kMaxSnapshotCells) {
    throw std::invalid_argument("the trace would hold " + std::to_string(snapshots) + " snapshots of " +
                                std::to_string(game.num_tiles()) + " tiles, more than " +
                                std::to_string(kMaxSnapshotCells) + " cells (use a larger snapshot_every)");
  }

  size_t next_move = 0, next_afk = 0;
  while (!game.over()) {
    if (next_move == moves.size() && next_afk == afks.size() && game.tick() > last_event) break;
    const int t = game.tick();
    for (; next_move < moves.size() && moves[next_move].turn <= t; ++next_move) {
      const auto& m = moves[next_move];
      if (m.player >= 0 && m.player < players) game.apply_move(m.player, m.start, m.end, m.half);
    }
    for (; next_afk < afks.size() && afks[next_afk].turn <= t; ++next_afk) {
      game.afk(afks[next_afk].player);
    }
    game.advance();
    trace.ticks.push_back(game.tick());
    for (int p = 0; p < players; ++p) {
      trace.army.push_back(game.army_of(p));
      trace.land.push_back(game.land_of(p));
    }
    trace.alive.push_back(game.alive_count());
    if (snapshot_every > 0 && game.tick() % snapshot_every == 0) snapshot(game, trace);
  }
  trace.end_tick = game.tick();
  trace.over = game.over();
  trace.death_order = game.death_order();
  if (trace.snapshot_ticks.empty() || trace.snapshot_ticks.back() != trace.end_tick) {
    snapshot(game, trace);
  }
  return trace;
}

}  // namespace grl
