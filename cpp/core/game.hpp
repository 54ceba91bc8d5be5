// The generals.io rules: one game's board, moves, growth, captures and elimination.
// A Game owns its board arrays; everything else (observations, masks, bots,
// replays, experience collection) reads them.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "observation.hpp"
#include "schema.hpp"

namespace grl {

// Tile kinds, kNeutral, kMaxPlayers and the board limits are in schema.hpp.
constexpr int kPass = -1;
// Armies saturate here instead of wrapping: growth and merges stop adding.
constexpr int32_t kMaxArmy = INT32_MAX;

// Throws std::invalid_argument naming `what` unless 1 <= sides <= kMaxBoardSide.
void check_board_size(int height, int width, const char* what = "board");

// Directions of the flat action index: d = 0 up, 1 down, 2 left, 3 right.
constexpr int kDy[4] = {-1, 1, 0, 0};
constexpr int kDx[4] = {0, 0, -1, 1};

// A board as given to a Game: kind, owner and army per tile (row-major) and
// each player's general tile.
struct MapSpec {
  int height = 0;
  int width = 0;
  std::vector<uint8_t> kind;
  std::vector<int16_t> owner;
  std::vector<int32_t> army;
  std::vector<int32_t> generals;  // one tile index per player
  std::vector<int32_t> teams;     // one team number per player; empty: free-for-all
};

// Per-tick events, cleared by begin_tick; rewards read them.
struct TickEvents {
  int32_t cities_gained[kMaxPlayers] = {};
  int32_t cities_lost[kMaxPlayers] = {};
  int32_t generals_captured[kMaxPlayers] = {};
  int32_t eliminated[kMaxPlayers] = {};  // 1 when the player died this tick
};

// The tile next to `tile` in direction d, or -1 off the board.
inline int neighbor(int tile, int d, int height, int width) {
  const int y = tile / width + kDy[d], x = tile % width + kDx[d];
  return y >= 0 && y < height && x >= 0 && x < width ? y * width + x : -1;
}

// Bit d set when the neighbour of `tile` in direction d is on the board and
// not a mountain: the directions a move from it can take.
inline uint8_t open_directions_of(const uint8_t* kind, int height, int width, int tile) {
  uint8_t bits = 0;
  for (int d = 0; d < 4; ++d) {
    const int next = neighbor(tile, d, height, width);
    if (next >= 0 && kind[next] != kMountain) bits |= static_cast<uint8_t>(1u << d);
  }
  return bits;
}

// open_directions_of every tile.
void compute_open_directions(const uint8_t* kind, int height, int width, uint8_t* out);

class Game {
 public:
  // max_ticks <= 0 means no tick limit. neutral_city_regrowth is the rule of
  // replay versions below 6 (unowned cities under 40 armies gain 1 on even ticks).
  Game(MapSpec map, int max_ticks = 0, bool neutral_city_regrowth = false);

  // ---- live play -------------------------------------------------------
  // One tick: actions[p] is a flat action index (see action_index) or kPass.
  // Moves resolve in ascending player order on even ticks and descending on
  // odd ticks; then the tick advances with growth. Returns true when the game
  // is over after this tick (won or truncated).
  bool step(const int32_t* actions);

  // ---- rule primitives (shared by live play and replays) ---------------
  // Applies one move; false (and nothing changes) when it is illegal.
  bool apply_move(int player, int start, int end, bool half);
  // A player going AFK, as the game's server handles it.
  void afk(int player);
  // Starts a tick's events afresh (step does it; replays call it before each tick).
  void begin_tick() { events_ = TickEvents{}; }
  // tick += 1, then growth.
  void advance();

  // ---- flat action index -------------------------------------------------
  // ((y * W) + x) * 4 + d for a full move; + H*W*4 for the half move.
  int num_actions() const { return height_ * width_ * 8; }
  bool decode_action(int32_t action, int& start, int& end, bool& half) const;
  // Legal now: own tile with army >= 2, target on the board and not a mountain.
  bool move_is_legal(int player, int start, int direction) const;

  // ---- state ---------------------------------------------------------------
  int height() const { return height_; }
  int width() const { return width_; }
  int num_tiles() const { return height_ * width_; }
  int num_players() const { return num_players_; }
  int tick() const { return tick_; }
  int max_ticks() const { return max_ticks_; }
  int alive_count() const { return alive_count_; }
  bool alive(int p) const { return alive_[p] != 0; }
  // As the reference simulator judges it: free-for-all is over when exactly one
  // player is left (when the last ones die at once no one wins and it is not
  // over); a team game when no two survivors are on different teams.
  bool over() const { return team_game_ ? alive_teams_ <= 1 : alive_count_ == 1; }
  bool truncated() const { return !over() && max_ticks_ > 0 && tick_ >= max_ticks_; }
  bool done() const { return over() || truncated(); }
  // The winning team, or -1; in free-for-all each player is its own team,
  // numbered as the player, so this is the last player standing.
  int winner() const;
  bool team_game() const { return team_game_; }
  int team(int p) const { return teams_[p]; }
  const std::vector<int32_t>& teams() const { return teams_; }
  // The board as observations read it, teams included.
  StateView view() const;
  int64_t army_of(int p) const { return army_total_[p]; }
  int32_t land_of(int p) const { return land_[p]; }
  int64_t illegal_moves(int p) const { return illegal_[p]; }
  const std::vector<int16_t>& death_order() const { return death_order_; }
  const std::vector<int32_t>& generals() const { return generals_; }  // -1 when gone
  const TickEvents& events() const { return events_; }

  const uint8_t* kind() const { return kind_.data(); }
  // compute_open_directions of the board (mountains never change, so it is
  // fixed for the game).
  const uint8_t* open_directions() const { return open_directions_.data(); }
  const int16_t* owner() const { return owner_.data(); }
  const int32_t* army() const { return army_.data(); }

  // Fog of war: every tile within the 3x3 square around a tile the player or an
  // alive teammate owns. Writes num_tiles() bytes (1 visible, 0 fog).
  void visibility(int player, uint8_t* out) const;

 private:
  void set_owner(int tile, int16_t new_owner);
  void add_army(int tile, int32_t delta);
  void capture_general(int victim, int captor, int general_tile);
  void kill(int player);
  // An alive player on `player`'s team, or -1.
  int alive_teammate(int player) const;

  int height_, width_, num_players_;
  int max_ticks_;
  bool neutral_city_regrowth_;
  int tick_ = 0;
  int alive_count_;
  int alive_teams_ = 0;
  bool team_game_;
  std::vector<int32_t> teams_;  // each player's team (its own index in free-for-all)
  std::vector<uint8_t> kind_;
  std::vector<uint8_t> open_directions_;
  std::vector<int16_t> owner_;
  std::vector<int32_t> army_;
  std::vector<int32_t> generals_;
  std::vector<int32_t> cities_;  // tiles that are cities, in the order they became one
  std::vector<uint8_t> alive_;
  std::vector<int64_t> army_total_;
  std::vector<int32_t> land_;
  std::vector<int64_t> illegal_;
  std::vector<int16_t> death_order_;
  TickEvents events_;
};

}  // namespace grl
