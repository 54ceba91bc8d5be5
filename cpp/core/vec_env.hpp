// N independent games stepped together on a thread pool. Every output lives
// in arrays owned by the VecEnv, allocated once and overwritten on each step.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "game.hpp"
#include "experience_buffer.hpp"
#include "mapgen.hpp"
#include "observation.hpp"
#include "thread_pool.hpp"

namespace grl {

struct RewardConfig {
  float win = 1.0f;
  float loss = -1.0f;
  float city_captured = 0.1f;
  float city_lost = -0.1f;
  float army_advantage = 0.05f;  // times (A_p - A_others) / (A_p + A_others)
  float land_gained = 0.0f;      // per tile gained this tick (negative when lost)
  float general_captured = 0.0f;
};

struct VecEnvConfig {
  int num_envs = 1;
  int players = 2;
  int height = 20;
  int width = 20;
  uint64_t seed = 0;
  int max_ticks = 0;
  int num_threads = 1;
  MapOptions map;  // players and padding are set from the fields above
  ObservationConfig observation;
  RewardConfig reward;
  bool observations = true;
  bool action_masks = true;
};

class VecEnv {
 public:
  explicit VecEnv(VecEnvConfig config);
  ~VecEnv();

  void reset();
  // actions: (num_envs, players) flat indices or kPass. With `truncate`, every
  // game this tick does not end is ended as truncated, as the tick limit would
  // (so a run that stops leaves no game without a last experience marked).
  void step(const int32_t* actions, bool truncate = false);

  // Runs fn(begin, end) over the games on the env's threads.
  void parallel_for(const std::function<void(int, int)>& fn) { pool_.parallel_for(config_.num_envs, fn); }

  // From now on, records one experience per alive player per tick into
  // `buffer` inside step (nullptr stops). Resets every game. In block mode a
  // step waits up to timeout_s for room, then fails before changing anything.
  void set_buffer(std::shared_ptr<ExperienceBuffer> buffer, double timeout_s);
  const std::shared_ptr<ExperienceBuffer>& buffer() const { return buffer_; }

  const VecEnvConfig& config() const { return config_; }
  int num_envs() const { return config_.num_envs; }
  int players() const { return config_.players; }
  int height() const { return config_.height; }
  int width() const { return config_.width; }
  const Game& game(int i) const { return *games_[i]; }
  uint64_t env_seed(int i, uint64_t episode) const;

  // Outputs (see the Python VecEnv for their shapes).
  std::vector<float> observations, final_observations;
  std::vector<uint8_t> action_masks;
  std::vector<float> rewards;
  std::vector<uint8_t> terminated, truncated, illegal;
  std::vector<int32_t> winner, tick;
  std::vector<uint64_t> game_id, episode_game_id;
  std::vector<int64_t> army;
  std::vector<int32_t> land;
  std::vector<uint8_t> alive;
  // Episode statistics, valid where episode_done is set.
  std::vector<uint8_t> episode_done;
  std::vector<int32_t> episode_winner, episode_length;
  std::vector<float> episode_return;
  std::vector<int64_t> episode_illegal_moves;
  std::vector<int64_t> episode_army;
  std::vector<int32_t> episode_land;

 private:
  void reset_game(int i);
  void step_game(int i, const int32_t* actions, bool truncate, uint8_t* scratch);
  void write_views(int i, float* obs, uint8_t* mask, uint8_t* scratch);
  void write_info(int i);

  VecEnvConfig config_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<Game>> games_;
  std::vector<uint64_t> episodes_;
  std::vector<float> running_return_;
  std::shared_ptr<ExperienceBuffer> buffer_;
  double buffer_timeout_ = 0;
  std::vector<uint64_t> state_ids_;  // each game's current state in the buffer
};

}  // namespace grl
