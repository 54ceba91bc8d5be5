// Stress test of the experience buffer: many producer threads appending games
// without locks, several cursors reading concurrently (raw and decoded, some
// filtered), the sampler, both full-buffer policies and closing cursors, and
// prioritized sampling with priority updates.
// Meant to run under ThreadSanitizer too (see .ci/run). Past 400 lines: the
// scenarios share the producers, readers and checks at the top, so they stay in
// one executable (one TSan build).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "experience_buffer.hpp"
#include "observation.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// A hang (a producer or reader waiting forever) ends the run after 100 s,
// saying so, instead of running into the CI's timeout.
const struct Watchdog {
  Watchdog() {
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::seconds(100));
      std::printf("test_buffer_stress: still running after 100 s (a producer or reader hangs)\n");
      std::fflush(stdout);
      std::_Exit(2);
    }).detach();
  }
} watchdog;

constexpr int kSide = 6;
constexpr int kTiles = kSide * kSide;
constexpr int kPlayers = 2;
constexpr uint64_t kFirstGame = 1000;

// The board of game `game` at `tick`: a pure function, so readers can check
// every state they get. Some ticks hold armies beyond 16 bits.
struct Board {
  uint8_t kind[kTiles];
  int16_t owner[kTiles];
  int32_t army[kTiles];

  Board(uint64_t game, int tick) {
    for (int t = 0; t < kTiles; ++t) {
      kind[t] = static_cast<uint8_t>((game + tick + t) % 4);
      owner[t] = static_cast<int16_t>((game * 3 + tick + t) % 17) - 1;
      army[t] = tick % 7 == 0 ? 70000 + tick * 5 + t : (tick * 13 + t) % 60000;
    }
  }
};

int32_t action_of(uint64_t game, int tick, int player) { return static_cast<int32_t>((tick * 16 + player) ^ game); }
float reward_of(int tick, int player) { return static_cast<float>(tick) * 0.5f + static_cast<float>(player); }

// One producer: plays `ticks` ticks of game `game`, storing each board once and
// one experience per player per tick referring to the boards before and after,
// as a VecEnv does for each of its games.
void produce(grl::ExperienceBuffer& buffer, uint64_t game, int ticks) {
  const Board first(game, 0);
  uint64_t state = buffer.append_state(first.kind, first.owner, first.army);
  buffer.release_state(state);
  for (int tick = 0; tick < ticks; ++tick) {
    uint64_t next = buffer.reserve_state();
    while (!buffer.hold_state(state)) {  // lapped by the other producers: store the board again
      const Board board(game, tick);
      buffer.write_state(next, board.kind, board.owner, board.army);
      buffer.release_state(next);
      state = next;
      next = buffer.reserve_state();
    }
    const Board next_board(game, tick + 1);
    buffer.write_state(next, next_board.kind, next_board.owner, next_board.army);
    grl::ExperienceRecord records[kPlayers];
    for (int p = 0; p < kPlayers; ++p) {
      records[p] = grl::ExperienceRecord{};
      records[p].game_id = game;
      records[p].state_id = state;
      records[p].next_state_id = next;
      records[p].tick = tick;
      records[p].action = action_of(game, tick, p);
      records[p].reward = reward_of(tick, p);
      records[p].player = static_cast<uint8_t>(p);
      records[p].flags = grl::kLegal | (tick + 1 == ticks ? grl::kTerminated : 0);
    }
    buffer.append(records, kPlayers);
    buffer.release_state(state);
    buffer.release_state(next);
    state = next;
  }
}

bool same_board(const grl::RawBatch& b, int32_t row, const Board& expected) {
  const size_t at = static_cast<size_t>(row) * kTiles;
  return std::equal(expected.kind, expected.kind + kTiles, b.state_kind.begin() + at) &&
         std::equal(expected.owner, expected.owner + kTiles, b.state_owner.begin() + at) &&
         std::equal(expected.army, expected.army + kTiles, b.state_army.begin() + at);
}

// Row i of a raw batch is a whole, untorn experience of the games above.
bool row_is_consistent(const grl::RawBatch& b, size_t i, int ticks) {
  const uint64_t game = b.game_id[i];
  const int tick = b.tick[i], player = b.player_id[i];
  return game >= kFirstGame && tick >= 0 && tick < ticks && player >= 0 && player < kPlayers &&
         b.action[i] == action_of(game, tick, player) && b.reward[i] == reward_of(tick, player) && b.legal[i] &&
         b.terminated[i] == (tick + 1 == ticks) && !b.truncated[i] &&
         same_board(b, b.state_index[i], Board(game, tick)) && same_board(b, b.next_state_index[i], Board(game, tick + 1));
}

// What one cursor's reader saw.
struct Seen {
  std::vector<uint64_t> sequences;
  uint64_t missed = 0;
  bool consistent = true;  // every row untorn and matching its game
  bool in_order = true;    // per (game, player), ticks strictly increase
  bool decoded_ok = true;  // decoded reads agree with the encoding of the boards
};

// Reads until the cursor has passed `total` sequences (or the deadline), in
// batches of `batch` items; decodes every `decode_every`-th batch.
void read_cursor(grl::ExperienceBuffer& buffer, grl::Cursor& cursor, uint64_t total, size_t batch, int ticks,
                 int decode_every, int pause_us, Seen& seen, Clock::time_point deadline) {
  std::vector<int> last_tick(4096, -1);
  grl::RawBatch raw;
  grl::DecodedBatch decoded;
  std::vector<float> obs(grl::kObservationChannels * kTiles);
  std::vector<uint8_t> mask(kTiles * 4), scratch(kTiles * grl::kObservationScratchPerTile);
  for (int round = 0; cursor.position() < total && Clock::now() < deadline; ++round) {
    cursor.read_raw(batch, 0.02, raw);
    seen.missed += raw.missed;
    CHECK(raw.next_sequence == cursor.position());
    for (size_t i = 0; i < raw.size(); ++i) {
      seen.sequences.push_back(raw.sequence[i]);
      if (!row_is_consistent(raw, i, ticks)) seen.consistent = false;
      const size_t key = (raw.game_id[i] - kFirstGame) * kPlayers + raw.player_id[i];
      if (key < last_tick.size()) {
        if (raw.tick[i] <= last_tick[key]) seen.in_order = false;
        last_tick[key] = raw.tick[i];
      }
    }
    if (decode_every > 0 && round % decode_every == 0 && raw.size() > 0) {
      buffer.decode(raw, decoded);
      const size_t i = raw.size() - 1;
      const Board board(raw.game_id[i], raw.tick[i]);
      const grl::StateView view{kSide, kSide, board.kind, board.owner, board.army, nullptr};
      grl::encode_observation(view, raw.player_id[i], buffer.observation_config(), obs.data(), scratch.data());
      grl::encode_action_mask(view, raw.player_id[i], mask.data());
      seen.decoded_ok &= std::equal(obs.begin(), obs.end(), decoded.state.begin() + i * obs.size()) &&
                         std::equal(mask.begin(), mask.end(), decoded.action_mask.begin() + i * mask.size());
    }
    if (pause_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
  }
}

bool is_every_sequence_once(std::vector<uint64_t> sequences, uint64_t begin, uint64_t end) {
  if (sequences.size() != end - begin) return false;
  for (size_t i = 0; i < sequences.size(); ++i) {
    if (sequences[i] != begin + i) return false;  // in order, each once
  }
  return true;
}

// Block policy: a ring far smaller than what is produced; every cursor gets
// every experience exactly once, nothing is missed, filtered cursors get
// exactly their games.
TEST_CASE("block many producers several cursors") {
  const int producers = 8, ticks = 400;
  const uint64_t total = static_cast<uint64_t>(producers) * ticks * kPlayers;
  grl::ExperienceBuffer buffer(kSide, kSide, 64, grl::FullPolicy::kBlock, 4 * producers + 8);
  const auto deadline = Clock::now() + std::chrono::seconds(90);

  struct Reader {
    std::shared_ptr<grl::Cursor> cursor;
    size_t batch;
    int decode_every, pause_us;
    Seen seen;
  };
  std::vector<Reader> readers;
  readers.push_back({buffer.open_cursor(grl::Cursor::kOldest, 0, {}), 7, 0, 0, {}});
  readers.push_back({buffer.open_cursor(grl::Cursor::kOldest, 0, {}), 50, 3, 0, {}});
  readers.push_back({buffer.open_cursor(grl::Cursor::kAt, 0, {}), 200, 0, 200, {}});  // a slow reader
  grl::CursorFilter filter;
  filter.game_ids = {kFirstGame + 1, kFirstGame + 5};
  filter.player_ids = {1};
  filter.min_tick = 10;
  readers.push_back({buffer.open_cursor(grl::Cursor::kOldest, 0, filter), 16, 0, 0, {}});

  std::vector<std::thread> threads;
  for (auto& r : readers) {
    threads.emplace_back([&, rp = &r] {
      read_cursor(buffer, *rp->cursor, total, rp->batch, ticks, rp->decode_every, rp->pause_us, rp->seen, deadline);
    });
  }
  for (int p = 0; p < producers; ++p) threads.emplace_back([&, p] { produce(buffer, kFirstGame + p, ticks); });
  for (auto& t : threads) t.join();

  CHECK(buffer.head() == total);
  for (size_t k = 0; k < 3; ++k) {
    const Seen& s = readers[k].seen;
    CHECK(is_every_sequence_once(s.sequences, 0, total));
    CHECK(s.missed == 0);
    if (s.missed) {
      std::printf("  cursor %zu: read %zu, missed %llu\n", k, s.sequences.size(),
                  static_cast<unsigned long long>(s.missed));
    }
    CHECK((s.consistent && s.in_order && s.decoded_ok));
  }
  const Seen& filtered = readers[3].seen;
  CHECK(filtered.sequences.size() == 2u * (ticks - 10));  // 2 games x player 1 x ticks 10..
  CHECK((filtered.missed == 0 && filtered.consistent && filtered.in_order));
  CHECK(readers[3].cursor->position() == total);
  const grl::BufferStats stats = buffer.stats();
  CHECK((stats.total_appended == total && stats.resident == 64 && stats.total_overwritten == total - 64));
}

// Overwrite policy: producers never wait; readers of every speed see sequences
// in increasing order, untorn, and received + missed accounts for every
// sequence exactly. The sampler runs alongside.
TEST_CASE("overwrite many producers lagging cursors") {
  const int producers = 6, ticks = 600;
  const uint64_t total = static_cast<uint64_t>(producers) * ticks * kPlayers;
  grl::ExperienceBuffer buffer(kSide, kSide, 256, grl::FullPolicy::kOverwrite);
  const auto deadline = Clock::now() + std::chrono::seconds(60);

  std::vector<std::shared_ptr<grl::Cursor>> cursors;
  std::vector<Seen> seen(3);
  const size_t batches[3] = {5, 64, 300};
  const int pauses[3] = {0, 100, 2000};
  for (int k = 0; k < 3; ++k) cursors.push_back(buffer.open_cursor(grl::Cursor::kOldest, 0, {}));

  std::atomic<bool> producing{true};
  std::atomic<bool> samples_consistent{true};
  std::vector<std::thread> threads;
  for (int k = 0; k < 3; ++k) {
    threads.emplace_back([&, k] {
      read_cursor(buffer, *cursors[k], total, batches[k], ticks, k == 1 ? 4 : 0, pauses[k], seen[k], deadline);
    });
  }
  threads.emplace_back([&] {
    grl::RawBatch sample;
    for (uint64_t seed = 1; producing.load(); ++seed) {
      buffer.sample_raw(32, seed, sample);
      for (size_t i = 0; i < sample.size(); ++i) {
        if (!row_is_consistent(sample, i, ticks)) samples_consistent = false;
      }
    }
  });
  std::vector<std::thread> producer_threads;
  for (int p = 0; p < producers; ++p) producer_threads.emplace_back([&, p] { produce(buffer, kFirstGame + p, ticks); });
  for (auto& t : producer_threads) t.join();
  producing = false;
  for (auto& t : threads) t.join();

  CHECK(buffer.head() == total);
  for (int k = 0; k < 3; ++k) {
    const Seen& s = seen[k];
    CHECK(std::is_sorted(s.sequences.begin(), s.sequences.end()));
    CHECK(std::adjacent_find(s.sequences.begin(), s.sequences.end()) == s.sequences.end());
    CHECK(s.sequences.size() + s.missed == total);  // every sequence read or reported missed
    CHECK((s.consistent && s.in_order && s.decoded_ok));
    CHECK(cursors[k]->total_missed() == s.missed);
  }
  CHECK(seen[2].missed > 0);  // the slow reader fell behind
  CHECK(samples_consistent.load());
  grl::RawBatch sample;
  buffer.sample_raw(100, 7, sample);  // and once everything is written
  CHECK(sample.size() == 100);
  for (size_t i = 0; i < sample.size(); ++i) CHECK(row_is_consistent(sample, i, ticks));
  const grl::BufferStats stats = buffer.stats();
  CHECK((stats.resident == 256 && stats.total_overwritten == total - 256));
}

// Block policy: producers held back by a cursor that stops reading are
// released when it is closed (and by a cursor destroyed without closing).
TEST_CASE("block closing cursors releases producers") {
  const int producers = 4, ticks = 300;
  const uint64_t total = static_cast<uint64_t>(producers) * ticks * kPlayers;
  grl::ExperienceBuffer buffer(kSide, kSide, 32, grl::FullPolicy::kBlock, 64);
  auto stalled = buffer.open_cursor(grl::Cursor::kOldest, 0, {});
  auto dropped = buffer.open_cursor(grl::Cursor::kOldest, 0, {});
  auto reader = buffer.open_cursor(grl::Cursor::kOldest, 0, {});
  Seen seen;
  std::vector<std::thread> threads;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  threads.emplace_back([&] { read_cursor(buffer, *reader, total, 10, ticks, 0, 0, seen, deadline); });
  for (int p = 0; p < producers; ++p) threads.emplace_back([&, p] { produce(buffer, kFirstGame + p, ticks); });

  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(buffer.head() <= 32 + producers * kPlayers);  // held back by the stalled cursors
  CHECK(!buffer.wait_for_room(kPlayers, 1, 0.05));     // a bounded wait says there is no room
  stalled->close();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(buffer.head() <= 32 + producers * kPlayers);  // the other one still holds them
  dropped.reset();
  for (auto& t : threads) t.join();
  CHECK(buffer.head() == total);
  CHECK((is_every_sequence_once(seen.sequences, 0, total) && seen.missed == 0));
  CHECK((seen.consistent && seen.in_order));
  CHECK(buffer.stats().cursor_lag.size() == 1);  // closed and destroyed cursors no longer count
  grl::RawBatch rest;
  const auto before = Clock::now();
  stalled->read_raw(1000, 10.0, rest);  // a closed cursor still reads what is resident, without waiting
  CHECK(Clock::now() - before < std::chrono::seconds(5));
  // the last 32 experiences, less those whose boards other games' boards replaced
  CHECK((rest.size() > 0 && rest.size() + rest.missed == total && rest.next_sequence == total));
  CHECK((rest.size() == 0 || rest.sequence.front() >= total - 32));
}

// Raw batches appended from several threads (as remote submitters do) while a
// VecEnv-like producer runs: each batch's rows stay together and intact.
TEST_CASE("append raw from several threads") {
  const int submitters = 4, batches = 40, rows = 12;
  const uint64_t total = static_cast<uint64_t>(submitters) * batches * rows;
  grl::ExperienceBuffer buffer(kSide, kSide, 128, grl::FullPolicy::kBlock, 256);
  auto cursor = buffer.open_cursor(grl::Cursor::kOldest, 0, {});
  Seen seen;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  std::thread reader([&] { read_cursor(buffer, *cursor, total, 25, 1 << 20, 0, 0, seen, deadline); });
  std::vector<std::thread> threads;
  for (int s = 0; s < submitters; ++s) {
    threads.emplace_back([&, s] {
      const uint64_t game = kFirstGame + 100 + s;
      for (int k = 0; k < batches; ++k) {
        grl::RawBatch b;
        b.height = b.width = kSide;
        const int first_tick = k * (rows / kPlayers);
        for (int t = 0; t <= rows / kPlayers; ++t) {
          const Board board(game, first_tick + t);
          b.state_kind.insert(b.state_kind.end(), board.kind, board.kind + kTiles);
          b.state_owner.insert(b.state_owner.end(), board.owner, board.owner + kTiles);
          b.state_army.insert(b.state_army.end(), board.army, board.army + kTiles);
        }
        for (int r = 0; r < rows; ++r) {
          const int tick = first_tick + r / kPlayers, player = r % kPlayers;
          b.sequence.push_back(0);
          b.game_id.push_back(game);
          b.player_id.push_back(player);
          b.tick.push_back(tick);
          b.action.push_back(action_of(game, tick, player));
          b.reward.push_back(reward_of(tick, player));
          b.legal.push_back(1);
          b.terminated.push_back(0);
          b.truncated.push_back(0);
          b.state_index.push_back(r / kPlayers);
          b.next_state_index.push_back(r / kPlayers + 1);
        }
        const uint64_t first = buffer.append_raw(b);
        CHECK(first % rows == 0);  // a batch's rows get consecutive sequence numbers
      }
    });
  }
  for (auto& t : threads) t.join();
  reader.join();
  CHECK((is_every_sequence_once(seen.sequences, 0, total) && seen.missed == 0));
  CHECK((seen.in_order && seen.consistent));
}

// Overwrite policy with prioritized replay: producers append while samplers
// draw prioritized n-step batches (the first draw builds the trees mid-run)
// and updaters set priorities of what they drew. Every sampled row is intact
// with its n-step return, and once quiet the trees hold exactly the resident
// experiences' priorities.
TEST_CASE("prioritized samplers and updaters") {
  const int producers = 4, ticks = 200;
  const uint64_t capacity = 512;
  grl::ExperienceBuffer buffer(kSide, kSide, capacity, grl::FullPolicy::kOverwrite);
  const double alpha = 0.7, gamma = 0.9;
  std::atomic<bool> producing{true}, enough{false};
  std::atomic<bool> samples_ok{true}, nstep_ok{true}, weights_ok{true};
  std::atomic<uint64_t> sampled{0}, update_rounds{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 2; ++k) {  // samplers
    threads.emplace_back([&, k] {
      grl::SampleOptions options;
      options.prioritized = true;
      options.alpha = alpha;
      options.n_step = 3;
      options.gamma = gamma;
      if (k == 1) options.player_ids = {1};
      grl::RawBatch raw;
      grl::DecodedBatch decoded;
      while (buffer.head() < capacity) std::this_thread::yield();  // the trees are built mid-run
      for (uint64_t seed = 1 + k * 1000000; producing.load(); ++seed) {
        buffer.sample_raw(64, seed, raw, options);
        sampled += raw.size();
        for (size_t i = 0; i < raw.size(); ++i) {
          if (!row_is_consistent(raw, i, ticks) || (k == 1 && raw.player_id[i] != 1)) samples_ok = false;
          if (!(raw.weight[i] > 0 && raw.weight[i] <= 1)) weights_ok = false;
          const int length = raw.nstep_length[i], tick = raw.tick[i], player = raw.player_id[i];
          double expected = 0, discount = 1;
          for (int j = 0; j < length; ++j, discount *= gamma) expected += discount * reward_of(tick + j, player);
          // (shorter than 3 also when the successor is not appended yet or was overwritten)
          const bool ok = length >= 1 && length <= 3 &&
                          std::abs(raw.nstep_reward[i] - expected) <= 1e-3 * (1 + std::abs(expected)) &&
                          (raw.nstep_done[i] != 0) == (tick + length == ticks) &&
                          same_board(raw, raw.nstep_next_state_index[i], Board(raw.game_id[i], tick + length));
          if (!ok) nstep_ok = false;
        }
        if (seed % 8 == 0) buffer.sample(80, seed, decoded, options);  // decoding on the pool
      }
    });
  }
  for (int k = 0; k < 2; ++k) {  // updaters
    threads.emplace_back([&, k] {
      grl::SampleOptions options;
      options.prioritized = true;
      options.alpha = alpha;
      grl::RawBatch raw;
      std::vector<float> priorities;
      while (buffer.head() < capacity) std::this_thread::yield();
      for (uint64_t seed = 7 + k * 1000000; producing.load(); ++seed) {
        buffer.sample_raw(32, seed, raw, options);
        priorities.resize(raw.size());
        for (size_t i = 0; i < raw.size(); ++i) priorities[i] = static_cast<float>(raw.sequence[i] % 7) + 0.5f;
        buffer.update_priorities(raw.sequence.data(), priorities.data(), raw.size());
        const uint64_t stale[2] = {0, 1};  // long overwritten: ignored
        const float p[2] = {100.0f, 100.0f};
        buffer.update_priorities(stale, p, 2);
        update_rounds += 1;
      }
    });
  }
  // Producers play games one after another until the samplers and updaters
  // have done enough rounds beside them (or a time limit passes).
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  std::vector<std::thread> producer_threads;
  for (int p = 0; p < producers; ++p) {
    producer_threads.emplace_back([&, p] {
      for (uint64_t game = kFirstGame + p; !enough.load(); game += producers) {
        produce(buffer, game, ticks);
        enough = (sampled.load() >= 20000 && update_rounds.load() >= 100) || Clock::now() > deadline;
      }
    });
  }
  for (auto& t : producer_threads) t.join();
  producing = false;
  for (auto& t : threads) t.join();
  const uint64_t total = buffer.head();

  CHECK(total % (ticks * kPlayers) == 0);  // whole games
  CHECK((sampled.load() > 0 && update_rounds.load() > 0));
  CHECK(samples_ok.load());
  CHECK(nstep_ok.load());
  CHECK(weights_ok.load());
  // Quiet: every resident experience is in the trees, and the sum-tree's root
  // is the sum of their priority^alpha (nothing evicted left behind).
  std::vector<uint64_t> resident;
  for (uint64_t seq = buffer.oldest(); seq < total; ++seq) resident.push_back(seq);
  std::vector<float> priorities(resident.size());
  buffer.priorities(resident.data(), resident.size(), priorities.data());
  double sum = 0;
  bool all_in = true;
  for (const float p : priorities) {
    all_in &= p >= 0;
    sum += std::pow(static_cast<double>(p), alpha);
  }
  const grl::PriorityStats stats = buffer.priority_stats();
  CHECK(all_in);
  CHECK(std::abs(stats.total - sum) <= 1e-6 * sum);
  CHECK((stats.max_priority == 100.0f || stats.max_priority == 6.5f));
  CHECK((stats.updates_ignored > 0 && stats.producer_sections > 0));
  grl::SampleOptions options;
  options.prioritized = true;
  options.alpha = alpha;
  grl::RawBatch sample;
  buffer.sample_raw(500, 3, sample, options);
  CHECK(sample.size() == 500);
  for (size_t i = 0; i < sample.size(); ++i) {
    CHECK((sample.sequence[i] >= buffer.oldest() && row_is_consistent(sample, i, ticks)));
  }
  std::printf("  prioritized: %llu sampled; producers' critical section mean %.0f ns, max %llu ns; updates' max %llu ns\n",
              static_cast<unsigned long long>(sampled.load()),
              static_cast<double>(stats.producer_ns_total) / std::max<uint64_t>(1, stats.producer_sections),
              static_cast<unsigned long long>(stats.producer_ns_max),
              static_cast<unsigned long long>(stats.updater_ns_max));
}

}  // namespace
