// Replaying a recorded generals.io game with the same rule primitives as live
// play, the way the game's reference simulator does: each tick applies the
// recorded moves due by then in file order, then the AFK events, then advances.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "experience_buffer.hpp"
#include "game.hpp"
#include "rewards.hpp"

namespace grl {

struct ReplayMove {
  int32_t player, start, end;
  bool half;
  int32_t turn;
};

struct ReplayAfk {
  int32_t player, turn;
};

// What a replay may cost, so that a small file cannot ask for unbounded time
// or memory: ticks simulated without any recorded event (at the start and
// between events; real games record moves every few ticks), and board cells
// held in snapshots (about 6 bytes each, many more once in Python).
constexpr int kMaxIdleTicks = 10000;
constexpr int64_t kMaxSnapshotCells = int64_t{1} << 22;

// Steps a game through a replay's events tick by tick, until the game is over
// (see Game::over) or, for a game that never ends, one tick after its last
// recorded event.
class ReplayRunner {
 public:
  // Throws std::invalid_argument when more than kMaxIdleTicks pass without a recorded event.
  ReplayRunner(Game& game, const std::vector<ReplayMove>& moves, const std::vector<ReplayAfk>& afks);

  bool finished() const;
  // The ticks a replay that never ends runs (one after its last event): a bound
  // on the ticks left to play.
  int ticks_at_most() const { return last_event_ + 1 - game_.tick(); }
  int last_event() const { return last_event_; }
  // Plays one tick; on_move(move, applied) is called for each of its moves in
  // file order, after the engine judged it.
  template <typename OnMove>
  void play_tick(OnMove&& on_move) {
    game_.begin_tick();
    const int t = game_.tick();
    const int players = game_.num_players();
    for (; next_move_ < moves_.size() && moves_[next_move_].turn <= t; ++next_move_) {
      const ReplayMove& m = moves_[next_move_];
      const bool applied = m.player >= 0 && m.player < players && game_.apply_move(m.player, m.start, m.end, m.half);
      on_move(m, applied);
    }
    for (; next_afk_ < afks_.size() && afks_[next_afk_].turn <= t; ++next_afk_) game_.afk(afks_[next_afk_].player);
    game_.advance();
  }

 private:
  Game& game_;
  const std::vector<ReplayMove>& moves_;
  const std::vector<ReplayAfk>& afks_;
  int last_event_ = 0;
  size_t next_move_ = 0, next_afk_ = 0;
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

// Runs the replay to its end (see ReplayRunner). Throws std::invalid_argument,
// before simulating, when its snapshots would exceed kMaxSnapshotCells.
ReplayTrace run_replay(Game& game, const std::vector<ReplayMove>& moves,
                       const std::vector<ReplayAfk>& afks, int snapshot_every = 100);

// How a replay becomes experiences.
struct ReplayExperienceOptions {
  int height = 0, width = 0;  // boards are padded with mountains to this size
  uint64_t game_id = 0;
  uint64_t first_sequence = 0;
  RewardConfig reward;
};

// Replays the game and appends to `out` (boards of options.height x width)
// one experience per alive player per tick, from that player's point of view:
// its first recorded move of the tick as a flat action index on the padded
// board (a pass when it has none; a pass judged illegal when the move names no
// neighbouring tile), legal as the engine judged it, rewards by options.reward,
// terminated on elimination or the game's end, truncated when the replay ends
// without a winner. Each tick's state is stored once.
void replay_experiences(Game& game, const std::vector<ReplayMove>& moves, const std::vector<ReplayAfk>& afks,
                        const ReplayExperienceOptions& options, RawBatch& out);

}  // namespace grl
