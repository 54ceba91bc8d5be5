// Filling an experience buffer by hand for the buffer's tests: one board per
// tick of a game, one experience per player referring to the boards before and
// after.
#pragma once

#include <cstdint>
#include <vector>

#include "experience_buffer.hpp"

namespace grl::testing {

constexpr int kBufferSide = 4;
constexpr int kBufferTiles = kBufferSide * kBufferSide;

// A board whose every army is `army`, owned by player 0 on its first tile.
struct FlatBoard {
  uint8_t kind[kBufferTiles] = {};
  int16_t owner[kBufferTiles];
  int32_t army[kBufferTiles];
  explicit FlatBoard(int32_t value) {
    for (int t = 0; t < kBufferTiles; ++t) {
      owner[t] = t == 0 ? 0 : kNeutral;
      army[t] = value;
    }
  }
};

// Plays `ticks` ticks of game `game` with `players` players into `buffer`;
// board t has armies t (so a state's tick is readable from it); the last
// experiences are terminated.
inline void record_game(ExperienceBuffer& buffer, uint64_t game, int ticks, int players = 2) {
  const FlatBoard first(0);
  uint64_t state = buffer.append_state(first.kind, first.owner, first.army);
  buffer.release_state(state);
  for (int tick = 0; tick < ticks; ++tick) {
    const uint64_t next = buffer.reserve_state();
    REQUIRE(buffer.hold_state(state));
    const FlatBoard after(tick + 1);
    buffer.write_state(next, after.kind, after.owner, after.army);
    std::vector<ExperienceRecord> records(players);
    for (int p = 0; p < players; ++p) {
      ExperienceRecord& r = records[p];
      r = ExperienceRecord{};
      r.game_id = game;
      r.state_id = state;
      r.next_state_id = next;
      r.tick = tick;
      r.action = p;
      r.reward = static_cast<float>(tick);
      r.player = static_cast<uint8_t>(p);
      r.flags = kLegal | (tick + 1 == ticks ? kTerminated : 0);
    }
    buffer.append(records.data(), records.size());
    buffer.release_state(state);
    buffer.release_state(next);
    state = next;
  }
}

}  // namespace grl::testing
