#include "vec_env.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "rng.hpp"

namespace grl {

namespace {

constexpr int kMaxThreads = 1024;
// Float observations of at least this many bytes (about the last-level cache
// of a small machine) are written with streaming stores.
constexpr size_t kStreamedObservationBytes = size_t{16} << 20;

void require(bool ok, const std::string& field, const std::string& message) {
  if (!ok) throw std::invalid_argument(field + ": " + message);
}

// The histogram bucket of a reward: the first upper bound -1.0 + 0.1 k it does not exceed.
inline int reward_bucket(float r) {
  const double k = std::ceil((static_cast<double>(r) + 1.0) * 10.0 - 1e-6);
  if (!(k >= 0)) return 0;  // below -1 (and NaN)
  return k > VecEnvCounters::kRewardBounds - 1 ? VecEnvCounters::kRewardBounds : static_cast<int>(k);
}

// The pool is built before the constructor's body: what its size depends on is checked here.
int checked_threads(const VecEnvConfig& c) {
  require(c.num_envs >= 1, "num_envs", "must be at least 1, got " + std::to_string(c.num_envs));
  require(c.num_threads >= 1 && c.num_threads <= kMaxThreads, "num_threads",
          "must be in 1.." + std::to_string(kMaxThreads) + ", got " + std::to_string(c.num_threads));
  return c.num_threads;
}

// The compact views to write, or null when the env writes none.
CompactViews* views(CompactViews& views) { return views.codes.empty() ? nullptr : &views; }

}  // namespace

VecEnv::VecEnv(VecEnvConfig config) : config_(std::move(config)), pool_(checked_threads(config_)) {
  auto& c = config_;
  const std::string sides = "must be in 2.." + std::to_string(kMaxEnvSide) + ", got ";
  require(c.height >= 2 && c.height <= kMaxEnvSide, "height", sides + std::to_string(c.height));
  require(c.width >= 2 && c.width <= kMaxEnvSide, "width", sides + std::to_string(c.width));
  require(c.max_ticks >= 0, "max_ticks", "must be >= 0 (0: no limit), got " + std::to_string(c.max_ticks));
  require(c.observation.army_scale > 0, "army_scale", "must be positive");
  require(c.teams.empty() || c.teams.size() == static_cast<size_t>(c.players), "teams",
          "expected one team per player (" + std::to_string(c.players) + "), got " + std::to_string(c.teams.size()));
  require(c.teams.empty() || std::any_of(c.teams.begin(), c.teams.end(), [&](int32_t t) { return t != c.teams[0]; }),
          "teams", "must hold at least two teams");
  c.map.players = c.players;
  c.map.max_side = std::min(c.map.max_side, std::min(c.height, c.width));
  c.map.min_side = std::min(c.map.min_side, c.map.max_side);
  c.map.pad_height = c.height;
  c.map.pad_width = c.width;
  validate(c.map);

  const size_t n = c.num_envs, p = c.players, tiles = static_cast<size_t>(c.height) * c.width;
  const bool compact_form = c.format == VecEnvConfig::Format::kCompact;
  const size_t obs_size = c.observations && !compact_form ? n * p * c.observation.channels() * tiles : 0;
  observations.assign(obs_size, 0.0f);
  final_observations.assign(obs_size, 0.0f);
  stream_observations_ = obs_size * sizeof(float) >= kStreamedObservationBytes;
  if (c.observations && compact_form) {
    compact.assign(n * p, tiles, needs_wide_armies(c.observation));
    final_compact.assign(n * p, tiles, needs_wide_armies(c.observation));
  }
  const size_t mask_size = compact_form ? packed_mask_bytes(tiles) : tiles * 4;
  action_masks.assign(c.action_masks ? n * p * mask_size : 0, 0);
  rewards.assign(n * p, 0.0f);
  terminated.assign(n * p, 0);
  truncated.assign(n, 0);
  illegal.assign(n * p, 0);
  winner.assign(n, -1);
  game_id.assign(n, 0);
  episode_game_id.assign(n, 0);
  tick.assign(n, 0);
  army.assign(n * p, 0);
  land.assign(n * p, 0);
  alive.assign(n * p, 0);
  episode_done.assign(n, 0);
  episode_winner.assign(n, -1);
  episode_length.assign(n, 0);
  episode_return.assign(n * p, 0.0f);
  episode_illegal_moves.assign(n * p, 0);
  episode_army.assign(n * p, 0);
  episode_land.assign(n * p, 0);
  running_return_.assign(n * p, 0.0f);
  episodes_.assign(n, 0);
  games_.resize(n);
  reset();
}

VecEnv::~VecEnv() = default;

uint64_t VecEnv::env_seed(int i, uint64_t episode) const {
  uint64_t state = config_.seed;
  uint64_t a = splitmix64(state);
  state = a ^ (static_cast<uint64_t>(i) * 0xD1B54A32D192ED03ULL);
  uint64_t b = splitmix64(state);
  state = b ^ (episode * 0x8CB92BA72F3D8DD7ULL);
  return splitmix64(state);
}

void VecEnv::reset_game(int i) {
  MapSpec spec = generate_map(config_.map, env_seed(i, episodes_[i]));
  spec.teams = config_.teams;
  games_[i] = std::make_unique<Game>(std::move(spec), config_.max_ticks);
  episodes_[i] += 1;
  game_id[i] = next_game_id();
  if (recorder_) recorder_->start_game(i, *games_[i]);
  std::fill_n(running_return_.begin() + static_cast<size_t>(i) * config_.players, config_.players, 0.0f);
}

void VecEnv::write_views(int i, float* obs, CompactViews* compact_views, uint8_t* mask, uint8_t* scratch) {
  const Game& g = *games_[i];
  const StateView view = g.view();
  const size_t tiles = static_cast<size_t>(g.num_tiles());
  const bool packed = config_.format == VecEnvConfig::Format::kCompact;
  for (int p = 0; p < config_.players; ++p) {
    const size_t row = static_cast<size_t>(i) * config_.players + p;
    if (obs) {
      const size_t size = static_cast<size_t>(config_.observation.channels()) * tiles;
      float* target = obs + row * size;
      if (stream_observations_) {
        // Made in a cached buffer, then streamed out.
        thread_local std::vector<float> staged;
        staged.resize(size);
        encode_observation(view, p, config_.observation, staged.data(), scratch);
        stream_floats(target, staged.data(), size);
      } else {
        encode_observation(view, p, config_.observation, target, scratch);
      }
    }
    if (compact_views) compact_views->write(row, view, p, config_.observation.obstacles, scratch);
    if (mask && packed) encode_packed_action_mask(view, p, mask + row * packed_mask_bytes(tiles));
    else if (mask) encode_action_mask(view, p, mask + row * tiles * 4);
  }
}

void VecEnv::write_info(int i) {
  const Game& g = *games_[i];
  winner[i] = g.winner();
  tick[i] = g.tick();
  for (int p = 0; p < config_.players; ++p) {
    const size_t k = static_cast<size_t>(i) * config_.players + p;
    army[k] = g.army_of(p);
    land[k] = g.land_of(p);
    alive[k] = g.alive(p);
  }
}

void VecEnv::reset() {
  // Every game stores its new board in the buffer: wait for room as step does,
  // instead of blocking without a limit while the cursors do not read.
  if (recorder_) recorder_->wait_for_reset(config_.num_envs);
  pool_.parallel_for(config_.num_envs, [this](int begin, int end) {
    std::vector<uint8_t> scratch(static_cast<size_t>(config_.height) * config_.width * kObservationScratchPerTile);
    for (int i = begin; i < end; ++i) {
      reset_game(i);
      std::fill_n(rewards.begin() + static_cast<size_t>(i) * config_.players, config_.players, 0.0f);
      std::fill_n(terminated.begin() + static_cast<size_t>(i) * config_.players, config_.players, 0);
      std::fill_n(illegal.begin() + static_cast<size_t>(i) * config_.players, config_.players, 0);
      truncated[i] = 0;
      episode_done[i] = 0;
      write_views(i, observations.empty() ? nullptr : observations.data(), views(compact),
                  config_.action_masks ? action_masks.data() : nullptr, scratch.data());
      write_info(i);
    }
  });
}

void VecEnv::step_game(int i, const int32_t* actions, bool truncate, uint8_t* scratch, VecEnvCounters& counts) {
  Game& g = *games_[i];
  const int players = config_.players;
  const size_t base = static_cast<size_t>(i) * players;
  const TickStart before = tick_start(g);
  const uint8_t* alive_before = before.alive;
  int64_t illegal_before[kMaxPlayers];
  for (int p = 0; p < players; ++p) illegal_before[p] = g.illegal_moves(p);

  if (recorder_) recorder_->begin_tick(i, g);

  const int tick_before = g.tick();
  const bool ended = g.step(actions);
  const bool cut = truncate && !ended;
  const bool finished = ended || cut;

  compute_rewards(g, config_.reward, before, rewards.data() + base);
  const int game_winner = g.winner();
  for (int p = 0; p < players; ++p) {
    running_return_[base + p] += rewards[base + p];
    terminated[base + p] = !g.alive(p) || g.over();
    illegal[base + p] = g.illegal_moves(p) > illegal_before[p];
  }
  truncated[i] = g.truncated() || cut;
  episode_done[i] = finished;
  if (counting_) count_step(i, alive_before, finished, game_winner, counts);

  if (recorder_) {
    ExperienceRecord records[kMaxPlayers];
    size_t count = 0;
    for (int p = 0; p < players; ++p) {
      if (!alive_before[p]) continue;
      ExperienceRecord& r = records[count++];
      r = ExperienceRecord{};
      r.game_id = game_id[i];
      r.tick = tick_before;
      r.action = actions[p];
      r.reward = rewards[base + p];
      r.player = static_cast<uint8_t>(p);
      r.flags = (illegal[base + p] ? 0 : kLegal) | (terminated[base + p] ? kTerminated : 0) |
                (truncated[i] && g.alive(p) ? kTruncated : 0);
    }
    recorder_->end_tick(i, g, records, count);
  }

  if (finished) {
    episode_winner[i] = game_winner;
    episode_game_id[i] = game_id[i];
    episode_length[i] = g.tick();
    for (int p = 0; p < players; ++p) {
      episode_return[base + p] = running_return_[base + p];
      episode_illegal_moves[base + p] = g.illegal_moves(p);
      episode_army[base + p] = g.army_of(p);
      episode_land[base + p] = g.land_of(p);
    }
    if (config_.observations) {
      write_views(i, final_observations.empty() ? nullptr : final_observations.data(), views(final_compact), nullptr,
                  scratch);
    }
    reset_game(i);
  }
  write_views(i, observations.empty() ? nullptr : observations.data(), views(compact),
              config_.action_masks ? action_masks.data() : nullptr, scratch);
  write_info(i);
}

void VecEnv::count_step(int i, const uint8_t* alive_before, bool finished, int game_winner,
                        VecEnvCounters& counts) const {
  const int players = config_.players;
  const size_t base = static_cast<size_t>(i) * players;
  for (int p = 0; p < players; ++p) {
    if (!alive_before[p]) continue;
    counts.experiences[p] += 1;
    counts.illegal_moves[p] += illegal[base + p];
    counts.reward_buckets[reward_bucket(rewards[base + p])] += 1;
    counts.reward_sum += rewards[base + p];
  }
  if (finished) {
    if (game_winner >= 0) counts.wins[game_winner] += 1;
    else if (truncated[i]) counts.games_truncated += 1;
    else counts.games_no_winner += 1;
  }
}

void VecEnvCounters::add(const VecEnvCounters& other) {
  for (int p = 0; p < kMaxPlayers; ++p) {
    experiences[p] += other.experiences[p];
    illegal_moves[p] += other.illegal_moves[p];
    wins[p] += other.wins[p];
  }
  games_truncated += other.games_truncated;
  games_no_winner += other.games_no_winner;
  for (int b = 0; b < kRewardBuckets; ++b) reward_buckets[b] += other.reward_buckets[b];
  reward_sum += other.reward_sum;
}

VecEnvCounters VecEnv::counters() const {
  std::lock_guard<std::mutex> lock(totals_mutex_);
  return totals_;
}

void VecEnv::set_buffer(std::shared_ptr<ExperienceBuffer> buffer, double timeout_s) {
  if (buffer) {
    if (buffer->height() != config_.height || buffer->width() != config_.width) {
      throw std::invalid_argument("buffer: its boards are " + std::to_string(buffer->height()) + "x" +
                                  std::to_string(buffer->width()) + ", the env's are " +
                                  std::to_string(config_.height) + "x" + std::to_string(config_.width));
    }
    const uint64_t per_step = static_cast<uint64_t>(config_.num_envs) * config_.players;
    if (buffer->capacity() < per_step) {
      throw std::invalid_argument("buffer: capacity " + std::to_string(buffer->capacity()) +
                                  " is below one step's experiences (" + std::to_string(per_step) + ")");
    }
    if (buffer->state_capacity() < 4 * static_cast<uint64_t>(config_.num_envs)) {
      throw std::invalid_argument("buffer: state_capacity " + std::to_string(buffer->state_capacity()) +
                                  " must be at least 4 x num_envs (" + std::to_string(4 * config_.num_envs) + ")");
    }
  }
  recorder_ = buffer ? std::make_unique<ExperienceRecorder>(std::move(buffer), config_.num_envs, timeout_s) : nullptr;
  // Replay the same maps as before the buffer was attached: collecting must
  // not change what is played.
  std::fill(episodes_.begin(), episodes_.end(), 0);
  reset();
}

void VecEnv::step(const int32_t* actions, bool truncate) {
  if (recorder_) recorder_->wait_for_step(config_.num_envs, config_.players);
  pool_.parallel_for(config_.num_envs, [this, actions, truncate](int begin, int end) {
    std::vector<uint8_t> scratch(static_cast<size_t>(config_.height) * config_.width * kObservationScratchPerTile);
    VecEnvCounters counts;  // this chunk's games, added to the totals once
    for (int i = begin; i < end; ++i) {
      step_game(i, actions + static_cast<size_t>(i) * config_.players, truncate, scratch.data(), counts);
    }
    if (counting_) {
      std::lock_guard<std::mutex> lock(totals_mutex_);
      totals_.add(counts);
    }
  });
}

}  // namespace grl
