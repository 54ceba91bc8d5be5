// Replaying a recorded generals.io game with the same rule primitives as live
// play, the way the game's reference simulator does: each tick applies the
// recorded moves due by then in file order, then the AFK events, then advances.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "game.hpp"

namespace grl {

struct ReplayMove {
  int32_t player, start, end;
  bool half;
  int32_t turn;
};

struct ReplayAfk {
  int32_t player, turn;
};

struct ReplayTrace {
  int num_players = 0;
  int end_tick = 0;
  bool over = false;
  std::vector<int32_t> ticks;  // one entry per simulated tick, after its advance
  std::vector<int64_t> army;   // ticks x players
  std::vector<int32_t> land;   // ticks x players
  std::vector<int32_t> alive;  // per tick
  std::vector<int16_t> death_order;
  std::vector<int32_t> snapshot_ticks;
  std::vector<std::vector<int16_t>> snapshot_owner;  // -2 mountain, -1 neutral, else player
  std::vector<std::vector<int32_t>> snapshot_army;
};

// What a replay may cost, so that a small file cannot ask for unbounded time
// or memory: ticks simulated without any recorded event (at the start and
// between events; real games record moves every few ticks), and board cells
// held in snapshots (about 6 bytes each, many more once in Python).
constexpr int kMaxIdleTicks = 10000;
constexpr int64_t kMaxSnapshotCells = int64_t{1} << 22;

// Runs the replay to its end (at most one player left) or, for a replay that
// never ends, until one tick after its last recorded event. Throws
// std::invalid_argument, before simulating, for a replay beyond the limits above.
ReplayTrace run_replay(Game& game, const std::vector<ReplayMove>& moves,
                       const std::vector<ReplayAfk>& afks, int snapshot_every = 100);

}  // namespace grl
