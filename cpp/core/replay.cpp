#include "replay.hpp"

#include <algorithm>
#include <stdexcept>
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

// Appends the game's board, padded with mountains to out.height x out.width.
void append_padded_state(const Game& game, RawBatch& out) {
  const size_t tiles = static_cast<size_t>(out.height) * out.width;
  const size_t base = out.state_kind.size();
  out.state_kind.resize(base + tiles);
  out.state_owner.resize(base + tiles);
  out.state_army.resize(base + tiles);
  // Each tile written once: the game's row, then the padding right of it and below.
  const auto write = [&](auto& column, const auto* board, auto pad) {
    auto* dest = column.data() + base;
    const int w = game.width(), padded_w = out.width;
    for (int y = 0; y < game.height(); ++y, dest += padded_w) {
      std::copy_n(board + y * w, w, dest);
      std::fill(dest + w, dest + padded_w, pad);
    }
    std::fill(dest, column.data() + base + tiles, pad);
  };
  write(out.state_kind, game.kind(), static_cast<uint8_t>(kMountain));
  write(out.state_owner, game.owner(), kNeutral);
  write(out.state_army, game.army(), int32_t{0});
}

// The flat action index of a recorded move on a board padded to `padded_width`
// columns, or kPass when its tiles are not neighbours on the game's board.
int32_t action_of(const Game& game, const ReplayMove& m, int padded_height, int padded_width) {
  const int w = game.width(), n = game.num_tiles();
  if (m.start < 0 || m.start >= n || m.end < 0 || m.end >= n) return kPass;
  const int y = m.start / w, x = m.start % w;
  for (int d = 0; d < 4; ++d) {
    const int ny = y + kDy[d], nx = x + kDx[d];
    if (ny < 0 || ny >= game.height() || nx < 0 || nx >= w || ny * w + nx != m.end) continue;
    const int32_t full = (y * padded_width + x) * 4 + d;
    return m.half ? full + padded_height * padded_width * 4 : full;
  }
  return kPass;
}

}  // namespace

ReplayRunner::ReplayRunner(Game& game, const std::vector<ReplayMove>& moves, const std::vector<ReplayAfk>& afks)
    : game_(game), moves_(moves), afks_(afks) {
  std::vector<int32_t> turns;
  turns.reserve(moves.size() + afks.size());
  for (const auto& m : moves) turns.push_back(m.turn);
  for (const auto& a : afks) turns.push_back(a.turn);
  std::sort(turns.begin(), turns.end());
  for (const int32_t turn : turns) {
    if (int64_t{turn} - last_event_ > kMaxIdleTicks) {
      throw std::invalid_argument("no recorded event between ticks " + std::to_string(last_event_) + " and " +
                                  std::to_string(turn) + " (at most " + std::to_string(kMaxIdleTicks) +
                                  " idle ticks are replayed)");
    }
    last_event_ = std::max(last_event_, turn);
  }
}

bool ReplayRunner::finished() const {
  return game_.over() || (next_move_ == moves_.size() && next_afk_ == afks_.size() && game_.tick() > last_event_);
}

ReplayTrace run_replay(Game& game, const std::vector<ReplayMove>& moves,
                       const std::vector<ReplayAfk>& afks, int snapshot_every) {
  ReplayTrace trace;
  const int players = game.num_players();
  trace.num_players = players;
  ReplayRunner runner(game, moves, afks);
  // The run ends by tick last_event + 1, with one last snapshot.
  const int64_t snapshots = (snapshot_every > 0 ? (int64_t{runner.last_event()} + 1) / snapshot_every : 0) + 1;
  if (snapshots * game.num_tiles() > kMaxSnapshotCells) {
    throw std::invalid_argument("the trace would hold " + std::to_string(snapshots) + " snapshots of " +
                                std::to_string(game.num_tiles()) + " tiles, more than " +
                                std::to_string(kMaxSnapshotCells) + " cells (use a larger snapshot_every)");
  }
  while (!runner.finished()) {
    runner.play_tick([](const ReplayMove&, bool) {});
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

void replay_experiences(Game& game, const std::vector<ReplayMove>& moves, const std::vector<ReplayAfk>& afks,
                        const ReplayExperienceOptions& options, RawBatch& out) {
  if (game.height() > options.height || game.width() > options.width) {
    throw std::invalid_argument("board " + std::to_string(game.height()) + "x" + std::to_string(game.width()) +
                                " does not fit in " + std::to_string(options.height) + "x" +
                                std::to_string(options.width));
  }
  out.height = options.height;
  out.width = options.width;
  const int players = game.num_players();
  const size_t tiles = static_cast<size_t>(options.height) * options.width;
  uint64_t sequence = options.first_sequence + out.size();
  ReplayRunner runner(game, moves, afks);
  // Room for every tick at once (growing the columns would copy them again and
  // again), up to a bound: a damaged file may name a far-off tick it never reaches.
  constexpr int kReservedTicksAtMost = 1 << 14;
  const size_t states =
      out.state_kind.size() / tiles + std::clamp(runner.ticks_at_most(), 0, kReservedTicksAtMost) + 1;
  const size_t rows = out.size() + (states - out.state_kind.size() / tiles) * players;
  for (auto* column : {&out.sequence, &out.game_id}) column->reserve(rows);
  for (auto* column : {&out.player_id, &out.tick, &out.action, &out.state_index, &out.next_state_index}) {
    column->reserve(rows);
  }
  for (auto* column : {&out.legal, &out.terminated, &out.truncated}) column->reserve(rows);
  out.reward.reserve(rows);
  out.state_kind.reserve(states * tiles);
  out.state_owner.reserve(states * tiles);
  out.state_army.reserve(states * tiles);
  append_padded_state(game, out);
  int32_t action[kMaxPlayers];
  uint8_t legal[kMaxPlayers], moved[kMaxPlayers];
  float reward[kMaxPlayers];
  while (!runner.finished()) {
    const int tick = game.tick();
    const TickStart before = tick_start(game);
    std::fill_n(action, players, kPass);
    std::fill_n(legal, players, 1);
    std::fill_n(moved, players, 0);
    runner.play_tick([&](const ReplayMove& m, bool applied) {
      if (m.player < 0 || m.player >= players || moved[m.player]) return;
      moved[m.player] = 1;
      action[m.player] = action_of(game, m, options.height, options.width);
      legal[m.player] = applied && action[m.player] != kPass;
    });
    compute_rewards(game, options.reward, before, reward);
    const bool last = runner.finished();
    const auto state_row = static_cast<int32_t>(out.state_kind.size() / tiles - 1);
    append_padded_state(game, out);
    for (int p = 0; p < players; ++p) {
      if (!before.alive[p]) continue;
      out.sequence.push_back(sequence++);
      out.game_id.push_back(options.game_id);
      out.player_id.push_back(p);
      out.tick.push_back(tick);
      out.action.push_back(action[p]);
      out.reward.push_back(reward[p]);
      out.legal.push_back(legal[p]);
      out.terminated.push_back(!game.alive(p) || game.over());
      out.truncated.push_back(last && game.alive(p) && !game.over());
      out.state_index.push_back(state_row);
      out.next_state_index.push_back(state_row + 1);
    }
  }
  out.next_sequence = sequence;
}

}  // namespace grl
