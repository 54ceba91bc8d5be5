// N independent games stepped together on a thread pool. Every output lives
// in arrays owned by the VecEnv, allocated once and overwritten on each step.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "compact_observation.hpp"
#include "game.hpp"
#include "experience_buffer.hpp"
#include "mapgen.hpp"
#include "observation.hpp"
#include "recorder.hpp"
#include "rewards.hpp"
#include "thread_pool.hpp"

namespace grl {

struct VecEnvConfig {
  int num_envs = 1;
  int players = 2;
  int height = 20;
  int width = 20;
  uint64_t seed = 0;
  int max_ticks = 2000;  // ticks before a game is truncated; 0: no limit
  int num_threads = 1;
  std::vector<int32_t> teams;  // one team per player; empty: free-for-all
  MapOptions map;  // players and padding are set from the fields above
  ObservationConfig observation;
  RewardConfig reward;
  bool observations = true;
  bool action_masks = true;
  // kCompact: tile codes and armies (CompactViews) and packed action masks.
  enum class Format : uint8_t { kFloat, kCompact };
  Format format = Format::kFloat;
};

// Running totals of what the steps produced (see VecEnv::counters).
struct VecEnvCounters {
  // Reward histogram buckets: upper bounds -1.0, -0.9, ..., 1.0, then +Inf.
  static constexpr int kRewardBounds = 21;
  static constexpr int kRewardBuckets = kRewardBounds + 1;
  uint64_t experiences[kMaxPlayers] = {};    // per player: one per alive player per tick
  uint64_t illegal_moves[kMaxPlayers] = {};  // per player
  uint64_t wins[kMaxPlayers] = {};           // per player: games won
  uint64_t games_truncated = 0;              // games ended by the tick limit
  uint64_t games_no_winner = 0;              // games over without a winner (not truncated)
  uint64_t reward_buckets[kRewardBuckets] = {};  // not cumulative
  double reward_sum = 0;

  void add(const VecEnvCounters& other);
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
  std::shared_ptr<ExperienceBuffer> buffer() const { return recorder_ ? recorder_->buffer() : nullptr; }

  const VecEnvConfig& config() const { return config_; }
  // Replaces the reward weights from the next step on. Not while a step runs:
  // call it from the thread that steps, between steps.
  void set_reward(const RewardConfig& reward) { config_.reward = reward; }
  // Totals since construction. Each stepping thread counts its games of a
  // step on its stack and adds them to the totals once, under a lock; this
  // copies the totals and may run while a step does.
  VecEnvCounters counters() const;
  // Counting is on by default; off only to measure what it costs.
  void set_counting(bool on) { counting_ = on; }
  int num_envs() const { return config_.num_envs; }
  int players() const { return config_.players; }
  int height() const { return config_.height; }
  int width() const { return config_.width; }
  const Game& game(int i) const { return *games_[i]; }
  uint64_t env_seed(int i, uint64_t episode) const;

  // Outputs (see the Python VecEnv for their shapes).
  std::vector<float> observations, final_observations;
  CompactViews compact, final_compact;
  std::vector<uint8_t> action_masks;  // bools, or packed bits (packed_mask_bytes a view) when compact
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
  void step_game(int i, const int32_t* actions, bool truncate, uint8_t* scratch, VecEnvCounters& counts);
  void write_views(int i, float* obs, CompactViews* compact, uint8_t* mask, uint8_t* scratch);
  void write_info(int i);

  VecEnvConfig config_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<Game>> games_;
  std::vector<uint64_t> episodes_;
  std::vector<float> running_return_;
  std::unique_ptr<ExperienceRecorder> recorder_;  // while a buffer is set
  VecEnvCounters totals_;
  mutable std::mutex totals_mutex_;
  bool counting_ = true;
  // Float observations written with streaming stores (stream_floats): the
  // observations of all games are too large to stay cached.
  bool stream_observations_ = false;
  void count_step(int i, const uint8_t* alive_before, bool finished, int game_winner, VecEnvCounters& counts) const;
};

}  // namespace grl
