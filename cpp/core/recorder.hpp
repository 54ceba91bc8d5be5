// Records a VecEnv's games into an experience buffer: owns the buffer's
// reserve/hold/release protocol, so that stepping only steps, scores and
// records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "experience_buffer.hpp"
#include "game.hpp"

namespace grl {

class ExperienceRecorder {
 public:
  // One state slot per game; `timeout_s` bounds each wait for room (block policy).
  ExperienceRecorder(std::shared_ptr<ExperienceBuffer> buffer, int num_games, double timeout_s);

  const std::shared_ptr<ExperienceBuffer>& buffer() const { return buffer_; }

  // Waits (up to the timeout) until a step of `games` games of `players`
  // players fits, or `states` boards for a reset; throws BufferFull otherwise,
  // before anything changes.
  void wait_for_step(uint64_t games, uint64_t players) const;
  void wait_for_reset(uint64_t games) const;

  // Game `i` starts: its first board is stored.
  void start_game(int i, const Game& game);

  // Game `i` is about to step from `game`'s board: reserves the slot of the
  // board after the tick, then holds the current one (storing it again when
  // another producer lapped it). Called by the game's own thread.
  void begin_tick(int i, const Game& game);
  // Stores the board after the tick (`game` stepped), appends the tick's
  // experiences with their state and next state set, and releases both boards.
  void end_tick(int i, const Game& game, ExperienceRecord* records, size_t count);

 private:
  std::shared_ptr<ExperienceBuffer> buffer_;
  double timeout_s_;
  std::vector<uint64_t> state_ids_;    // each game's current board in the buffer
  std::vector<uint64_t> next_states_;  // each game's board being stepped to
};

}  // namespace grl
