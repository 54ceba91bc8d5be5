#include "recorder.hpp"

#include <string>

namespace grl {

namespace {

BufferFull buffer_full(double timeout_s) {
  return BufferFull("experience buffer is full: its open cursors have not read for " + std::to_string(timeout_s) +
                    " s (read from them, close them, or use the overwrite policy)");
}

}  // namespace

ExperienceRecorder::ExperienceRecorder(std::shared_ptr<ExperienceBuffer> buffer, int num_games, double timeout_s)
    : buffer_(std::move(buffer)), timeout_s_(timeout_s), state_ids_(num_games, 0), next_states_(num_games, 0) {}

void ExperienceRecorder::wait_for_step(uint64_t games, uint64_t players) const {
  // Per game at most: its board stored again (when lapped), the next board and a reset board.
  if (!buffer_->wait_for_room(games * players, 3 * games, timeout_s_)) throw buffer_full(timeout_s_);
}

void ExperienceRecorder::wait_for_reset(uint64_t games) const {
  if (!buffer_->wait_for_room(0, games, timeout_s_)) throw buffer_full(timeout_s_);
}

void ExperienceRecorder::start_game(int i, const Game& game) {
  state_ids_[i] = buffer_->append_state(game);
  buffer_->release_state(state_ids_[i]);  // held again by the tick that refers to it
}

void ExperienceRecorder::begin_tick(int i, const Game& game) {
  // The slot for the board after this tick first, then the board about to be
  // left is held until this tick's experiences refer to it. When another
  // producer lapped it, it is stored again, into the slot just reserved.
  while (true) {
    next_states_[i] = buffer_->reserve_state();
    if (buffer_->hold_state(state_ids_[i])) return;
    buffer_->write_state(next_states_[i], game);
    buffer_->release_state(next_states_[i]);  // reserving again holds nothing
    state_ids_[i] = next_states_[i];
  }
}

void ExperienceRecorder::end_tick(int i, const Game& game, ExperienceRecord* records, size_t count) {
  const uint64_t state = state_ids_[i], next_state = next_states_[i];
  buffer_->write_state(next_state, game);
  for (size_t k = 0; k < count; ++k) {
    records[k].state_id = state;
    records[k].next_state_id = next_state;
  }
  buffer_->append(records, count);
  buffer_->release_state(state);
  buffer_->release_state(next_state);
  state_ids_[i] = next_state;
}

}  // namespace grl
