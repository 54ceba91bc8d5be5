// Core rules, map generation and replay of the engine, without Python.
// Prints one line per failed check and "N passed, N failed" last; exits non-zero on failure.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "game.hpp"
#include "mapgen.hpp"
#include "observation.hpp"
#include "replay.hpp"

namespace {

// Passes when `expr` throws std::invalid_argument whose message contains `fragment`.
#define CHECK_THROWS(expr, fragment)                                                \
  do {                                                                              \
    bool thrown_ = false;                                                           \
    try {                                                                           \
      (void)(expr);                                                                 \
    } catch (const std::invalid_argument& e) {                                      \
      thrown_ = std::string(e.what()).find(fragment) != std::string::npos;          \
      if (!thrown_) std::printf("  message was: %s\n", e.what());                   \
    }                                                                               \
    CHECK(thrown_ && #expr);                                                        \
  } while (0)

// A board of plain neutral tiles to draw on.
struct Board {
  grl::MapSpec spec;

  Board(int height, int width, int players) {
    spec.height = height;
    spec.width = width;
    spec.kind.assign(height * width, grl::kPlain);
    spec.owner.assign(height * width, grl::kNeutral);
    spec.army.assign(height * width, 0);
    spec.generals.assign(players, -1);
  }
  int at(int y, int x) const { return y * spec.width + x; }
  Board& set(int y, int x, uint8_t kind, int16_t owner, int32_t army) {
    const int t = at(y, x);
    spec.kind[t] = kind;
    spec.owner[t] = owner;
    spec.army[t] = army;
    if (kind == grl::kGeneral) spec.generals[owner] = t;
    return *this;
  }
  grl::Game game(int max_ticks = 0) const { return grl::Game(spec, max_ticks); }
};

int32_t action(const grl::Game& g, int y, int x, int direction, bool half = false) {
  return (y * g.width() + x) * 4 + direction + (half ? g.num_tiles() * 4 : 0);
}

constexpr int kUp = 0, kDown = 1, kLeft = 2, kRight = 3;

void test_moves_and_combat() {
  // row 0: G0 | 0:7 | 1:3 | neutral:6 | G1
  Board b(1, 6, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(0, 1, grl::kPlain, 0, 7).set(0, 2, grl::kPlain, 1, 3);
  b.set(0, 3, grl::kPlain, grl::kNeutral, 6).set(0, 5, grl::kGeneral, 1, 1);

  grl::Game half = b.game();
  const int32_t half_move[2] = {action(half, 0, 1, kRight, true), grl::kPass};
  half.step(half_move);  // keeps ceil(7/2) = 4, moves 3 onto 3: a tie
  CHECK(half.army()[1] == 4);
  CHECK(half.owner()[2] == 1 && half.army()[2] == 0);

  grl::Game full = b.game();
  const int32_t full_move[2] = {action(full, 0, 1, kRight), grl::kPass};
  full.step(full_move);  // moves 6 onto 3: takes the tile with 3
  CHECK(full.army()[1] == 1);
  CHECK(full.owner()[2] == 0 && full.army()[2] == 3);
  CHECK(full.land_of(0) == 3 && full.land_of(1) == 1);
  CHECK(full.army_of(0) == 1 + 1 + 3 && full.army_of(1) == 1);
  CHECK(full.tick() == 1);
}

void test_general_capture() {
  Board b(2, 3, 2);
  b.set(0, 0, grl::kPlain, 0, 10).set(0, 1, grl::kGeneral, 1, 2).set(0, 2, grl::kPlain, 1, 5);
  b.set(1, 0, grl::kGeneral, 0, 1).set(1, 2, grl::kPlain, 1, 4);
  grl::Game g = b.game();
  const int32_t moves[2] = {action(g, 0, 0, kRight), grl::kPass};
  CHECK(g.step(moves));
  CHECK(g.owner()[1] == 0 && g.army()[1] == 7 && g.kind()[1] == grl::kCity);
  CHECK(g.owner()[2] == 0 && g.army()[2] == 3);  // 5 halved, rounding up
  CHECK(g.owner()[5] == 0 && g.army()[5] == 2);  // 4 halved
  CHECK(g.over() && g.done() && !g.truncated() && g.winner() == 0);
  CHECK(g.death_order().size() == 1 && g.death_order()[0] == 1);
  CHECK(g.generals()[1] == -1);
  CHECK(g.events().generals_captured[0] == 1 && g.events().eliminated[1] == 1);
}

void test_growth() {
  Board b(2, 3, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(0, 1, grl::kCity, 0, 10).set(0, 2, grl::kCity, grl::kNeutral, 40);
  b.set(1, 0, grl::kPlain, 0, 3).set(1, 2, grl::kGeneral, 1, 1);
  grl::Game g = b.game();
  const int32_t pass[2] = {grl::kPass, grl::kPass};
  g.step(pass);
  CHECK(g.army()[0] == 1 && g.army()[1] == 10);  // odd tick: nothing grows
  g.step(pass);
  CHECK(g.army()[0] == 2 && g.army()[1] == 11 && g.army()[2] == 40 && g.army()[3] == 3);
  while (g.tick() < 50) g.step(pass);
  CHECK(g.army()[0] == 27 && g.army()[1] == 36 && g.army()[2] == 40 && g.army()[3] == 4);
  CHECK(g.army_of(0) == 27 + 36 + 4);
}

void test_move_order_flips_with_tick_parity() {
  // G0 | 0:5 | neutral:3 | 1:3 | G1, both players move into the middle tile
  Board b(1, 5, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(0, 1, grl::kPlain, 0, 5).set(0, 2, grl::kPlain, grl::kNeutral, 3);
  b.set(0, 3, grl::kPlain, 1, 3).set(0, 4, grl::kGeneral, 1, 1);
  const int32_t pass[2] = {grl::kPass, grl::kPass};

  grl::Game even = b.game();
  const int32_t moves[2] = {action(even, 0, 1, kRight), action(even, 0, 3, kLeft)};
  even.step(moves);  // player 0 first
  CHECK(even.owner()[2] == 1 && even.army()[2] == 1);

  grl::Game odd = b.game();
  odd.step(pass);
  odd.step(moves);  // player 1 first
  CHECK(odd.owner()[2] == 0 && odd.army()[2] == 3);
}

void test_illegal_moves() {
  Board b(2, 2, 2);
  b.set(0, 0, grl::kGeneral, 0, 5).set(0, 1, grl::kMountain, grl::kNeutral, 0);
  b.set(1, 1, grl::kGeneral, 1, 1);
  grl::Game g = b.game();
  const int32_t bad[][2] = {
      {action(g, 0, 0, kRight), grl::kPass},  // into a mountain
      {action(g, 0, 0, kUp), action(g, 1, 1, kUp)},  // off the board; army of 1
      {-7, g.num_actions()},  // out of range
      {action(g, 1, 1, kLeft), grl::kPass},  // not player 0's tile
  };
  for (const auto& moves : bad) g.step(moves);
  CHECK(g.illegal_moves(0) == 4 && g.illegal_moves(1) == 2);
  CHECK(g.army()[0] == 7 && g.owner()[2] == grl::kNeutral);  // grew at ticks 2 and 4, never moved
  CHECK(g.move_is_legal(0, 0, kDown) && !g.move_is_legal(0, 0, kRight));
  CHECK(!g.move_is_legal(0, 0, kUp) && !g.move_is_legal(1, 0, kDown));
  CHECK(!g.move_is_legal(0, -1, kDown) && !g.move_is_legal(0, 4, kDown));
  CHECK(!g.move_is_legal(0, 0, 4) && !g.move_is_legal(0, 0, -1));
}

void test_truncation_and_visibility() {
  Board b(4, 4, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(3, 3, grl::kGeneral, 1, 1);
  grl::Game g = b.game(3);
  const int32_t pass[2] = {grl::kPass, grl::kPass};
  CHECK(!g.step(pass) && !g.step(pass) && g.step(pass));
  CHECK(g.truncated() && !g.over() && g.winner() == -1);

  std::vector<uint8_t> seen(g.num_tiles());
  g.visibility(0, seen.data());
  int count = 0;
  for (uint8_t s : seen) count += s;
  CHECK(count == 4 && seen[0] && seen[1] && seen[4] && seen[5]);
}

void test_bad_boards_throw() {
  Board b(2, 2, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(1, 1, grl::kGeneral, 1, 1);
  grl::MapSpec wrong_size = b.spec;
  wrong_size.army.pop_back();
  CHECK_THROWS(grl::Game(wrong_size), "army has 3 tiles, expected 4");
  grl::MapSpec owned_mountain = b.spec;
  owned_mountain.kind[1] = grl::kMountain;
  owned_mountain.owner[1] = 0;
  CHECK_THROWS(grl::Game(owned_mountain), "mountain tile 1 cannot be owned");
  grl::MapSpec unowned_general = b.spec;
  unowned_general.owner[3] = 0;
  CHECK_THROWS(grl::Game(unowned_general), "must be a general owned by player 1");
}

bool same_map(const grl::MapSpec& a, const grl::MapSpec& b) {
  return a.height == b.height && a.width == b.width && a.kind == b.kind && a.owner == b.owner &&
         a.army == b.army && a.generals == b.generals;
}

void test_map_generation() {
  grl::MapOptions options;
  CHECK(same_map(grl::generate_map(options, 42), grl::generate_map(options, 42)));
  CHECK(!same_map(grl::generate_map(options, 42), grl::generate_map(options, 43)));
  for (int players : {2, 5, 16}) {
    options.players = players;
    for (uint64_t seed = 0; seed < 5; ++seed) {
      const grl::MapSpec map = grl::generate_map(options, seed);
      CHECK(map.height >= 18 && map.height <= 23 && map.width >= 18 && map.width <= 23);
      CHECK(static_cast<int>(map.generals.size()) == players);
      int mountains = 0;
      for (uint8_t k : map.kind) mountains += k == grl::kMountain;
      const double fraction = static_cast<double>(mountains) / map.kind.size();
      CHECK(fraction > 0.19 && fraction < 0.21);
      grl::Game game(map);  // a valid board
      CHECK(game.num_players() == players);
    }
  }
  options = grl::MapOptions{};
  options.pad_height = 30;
  options.pad_width = 25;
  const grl::MapSpec padded = grl::generate_map(options, 7);
  CHECK(padded.height == 30 && padded.width == 25);
  CHECK(padded.kind[30 * 25 - 1] == grl::kMountain);

  grl::MapOptions bad;
  bad.players = 17;
  CHECK_THROWS(grl::validate(bad), "map option players");
  bad = grl::MapOptions{};
  bad.mountain_fraction = 0.9;
  CHECK_THROWS(grl::generate_map(bad, 0), "map option mountain_fraction");
}

void test_replay_runs_to_its_last_event() {
  Board b(1, 4, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(0, 3, grl::kGeneral, 1, 1);
  grl::Game g = b.game();
  const std::vector<grl::ReplayMove> moves = {{0, 0, 1, false, 2}, {0, 1, 2, false, 3}};
  const grl::ReplayTrace trace = grl::run_replay(g, moves, {}, 100);
  CHECK(trace.end_tick == 4 && !trace.over);
  CHECK(trace.ticks.size() == 4 && trace.land.size() == 8);
  CHECK(trace.land[2 * 1 + 0] == 1 && trace.land[2 * 2 + 0] == 2);  // after ticks 2 and 3
  CHECK(trace.snapshot_ticks.size() == 1 && trace.snapshot_ticks[0] == 4);
  CHECK(trace.snapshot_owner[0][1] == 0 && trace.snapshot_owner[0][2] == grl::kNeutral);
}

void test_replay_cost_is_bounded() {
  Board b(1, 4, 2);
  b.set(0, 0, grl::kGeneral, 0, 1).set(0, 3, grl::kGeneral, 1, 1);
  grl::Game g = b.game();
  const std::vector<grl::ReplayMove> idle = {{0, 0, 1, false, grl::kMaxIdleTicks + 1}};
  CHECK_THROWS(grl::run_replay(g, idle, {}, 100), "idle ticks");
  CHECK(g.tick() == 0);  // refused before simulating
  Board large(grl::kMaxBoardSide, grl::kMaxBoardSide, 2);
  large.set(0, 0, grl::kGeneral, 0, 1).set(9, 9, grl::kGeneral, 1, 1);
  grl::Game big = large.game();
  const std::vector<grl::ReplayMove> late = {{0, 0, 1, false, 5000}};
  CHECK_THROWS(grl::run_replay(big, late, {}, 100), "snapshot_every");  // 51 snapshots of 2^20 tiles
  CHECK(big.tick() == 0);
}

void test_armies_saturate() {
  Board b(1, 3, 2);
  b.set(0, 0, grl::kGeneral, 0, grl::kMaxArmy).set(0, 1, grl::kPlain, 0, grl::kMaxArmy - 1);
  b.set(0, 2, grl::kGeneral, 1, 1);
  grl::Game g = b.game();
  for (int t = 0; t < 50; ++t) g.advance();
  CHECK(g.army()[0] == grl::kMaxArmy && g.army()[1] == grl::kMaxArmy);
  CHECK(g.army_of(0) == 2 * int64_t{grl::kMaxArmy});
  CHECK(g.apply_move(0, 1, 0, false));  // a merge saturates too
  CHECK(g.army()[0] == grl::kMaxArmy && g.army()[1] == 1 && g.army_of(0) == int64_t{grl::kMaxArmy} + 1);
}

// Any width: the rows it keeps are sized by the board (they were 1024-byte stack arrays).
void test_visibility_of_a_wide_board() {
  const int width = 3000;
  std::vector<int16_t> owner(2 * width, grl::kNeutral);
  owner[width - 1] = owner[width + 1500] = 0;
  const std::vector<uint8_t> kind(2 * width, grl::kPlain);
  const std::vector<int32_t> army(2 * width, 1);
  std::vector<uint8_t> visible(2 * width, 9);
  grl::compute_visibility({2, width, kind.data(), owner.data(), army.data()}, 0, visible.data());
  int seen = 0;
  for (int t = 0; t < 2 * width; ++t) seen += visible[t];
  CHECK(seen == 4 + 6);
  CHECK(visible[width - 2] && visible[2 * width - 1] && visible[1499] && visible[width + 1501]);
}

}  // namespace

int main() {
  test_moves_and_combat();
  test_general_capture();
  test_growth();
  test_move_order_flips_with_tick_parity();
  test_illegal_moves();
  test_truncation_and_visibility();
  test_bad_boards_throw();
  test_map_generation();
  test_replay_runs_to_its_last_event();
  test_replay_cost_is_bounded();
  test_armies_saturate();
  test_visibility_of_a_wide_board();
  return check_summary();
}
