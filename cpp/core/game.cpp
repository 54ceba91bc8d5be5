#include "game.hpp"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "vectorize.hpp"

namespace grl {

namespace {

// `message()` makes the error's text, only when there is an error.
template <typename Message>
void require(bool ok, const Message& message) {
  if (!ok) throw std::invalid_argument(message());
}

}  // namespace

void check_board_size(int height, int width, const char* what) {
  require(height >= 1 && height <= kMaxBoardSide && width >= 1 && width <= kMaxBoardSide,
          [&] { return std::string(what) + ": size must be between 1x1 and " + std::to_string(kMaxBoardSide) + "x" +
              std::to_string(kMaxBoardSide) + ", got " + std::to_string(height) + "x" + std::to_string(width); });
}

// Flat passes the compiler vectorizes (as compute_visibility): the passable
// tiles with a zero row each side, then each tile's four neighbours at once,
// the row ends masked. Equal to open_directions_of of every tile.
GRL_VECTOR_CLONES
void compute_open_directions(const uint8_t* kind, int height, int width, uint8_t* out) {
  const int w = width, n = height * width;
  thread_local std::vector<uint8_t> passable_store, not_first, not_last;
  thread_local int mask_height = -1, mask_width = -1;
  if (mask_height != height || mask_width != width) {
    passable_store.assign(static_cast<size_t>(n) + 2 * static_cast<size_t>(w), 0);
    not_first.resize(static_cast<size_t>(n));
    not_last.resize(static_cast<size_t>(n));
    for (int t = 0; t < n; ++t) {
      not_first[t] = t % w != 0;
      not_last[t] = t % w != w - 1;
    }
    mask_height = height;
    mask_width = width;
  }
  uint8_t* passable = passable_store.data() + w;
  const uint8_t* first_ok = not_first.data();
  const uint8_t* last_ok = not_last.data();
  for (int t = 0; t < n; ++t) passable[t] = kind[t] != kMountain;
  for (int t = 0; t < n; ++t) {
    out[t] = static_cast<uint8_t>(passable[t - w] | passable[t + w] << 1 | (passable[t - 1] & first_ok[t]) << 2 |
                                  (passable[t + 1] & last_ok[t]) << 3);
  }
}

Game::Game(MapSpec map, int max_ticks, bool neutral_city_regrowth)
    : height_(map.height),
      width_(map.width),
      num_players_(static_cast<int>(map.generals.size())),
      max_ticks_(max_ticks),
      neutral_city_regrowth_(neutral_city_regrowth),
      alive_count_(num_players_),
      team_game_(!map.teams.empty()),
      teams_(std::move(map.teams)),
      kind_(std::move(map.kind)),
      owner_(std::move(map.owner)),
      army_(std::move(map.army)),
      generals_(std::move(map.generals)) {
  check_board_size(height_, width_);
  require(num_players_ >= 1 && num_players_ <= kMaxPlayers,
          [&] { return "players must be between 1 and 16, got " + std::to_string(num_players_); });
  const size_t n = static_cast<size_t>(height_) * width_;
  require(kind_.size() == n, [&] { return "kind has " + std::to_string(kind_.size()) + " tiles, expected " +
                                 std::to_string(n); });
  require(owner_.size() == n, [&] { return "owner has " + std::to_string(owner_.size()) +
                                  " tiles, expected " + std::to_string(n); });
  require(army_.size() == n, [&] { return "army has " + std::to_string(army_.size()) + " tiles, expected " +
                                 std::to_string(n); });
  if (team_game_) {
    require(teams_.size() == static_cast<size_t>(num_players_),
            [&] { return "teams has " + std::to_string(teams_.size()) + " entries, expected one per player (" +
                std::to_string(num_players_) + ")"; });
    for (int p = 0; p < num_players_; ++p) {
      require(teams_[p] >= 0, [&] { return "team of player " + std::to_string(p) + " is negative"; });
    }
  } else {
    teams_.resize(num_players_);
    for (int p = 0; p < num_players_; ++p) teams_[p] = p;
  }
  for (int p = 0; p < num_players_; ++p) {
    alive_teams_ += std::find(teams_.begin(), teams_.begin() + p, teams_[p]) == teams_.begin() + p;
  }
  alive_.assign(num_players_, 1);
  army_total_.assign(num_players_, 0);
  land_.assign(num_players_, 0);
  illegal_.assign(num_players_, 0);
  for (size_t t = 0; t < n; ++t) {
    require(kind_[t] <= kGeneral, [&] { return "tile " + std::to_string(t) + " has unknown kind " +
                                      std::to_string(kind_[t]); });
    require(owner_[t] >= kNeutral && owner_[t] < num_players_,
            [&] { return "tile " + std::to_string(t) + " has owner " + std::to_string(owner_[t]) +
                " outside -1.." + std::to_string(num_players_ - 1); });
    require(army_[t] >= 0, [&] { return "tile " + std::to_string(t) + " has negative army"; });
    require(kind_[t] != kMountain || owner_[t] == kNeutral,
            [&] { return "mountain tile " + std::to_string(t) + " cannot be owned"; });
    if (kind_[t] == kCity) cities_.push_back(static_cast<int32_t>(t));
    if (owner_[t] >= 0) {
      land_[owner_[t]] += 1;
      army_total_[owner_[t]] += army_[t];
    }
  }
  open_directions_.assign(n, 0);
  compute_open_directions(kind_.data(), height_, width_, open_directions_.data());
  for (int p = 0; p < num_players_; ++p) {
    const int g = generals_[p];
    require(g >= 0 && static_cast<size_t>(g) < n,
            [&] { return "general of player " + std::to_string(p) + " is off the board: " + std::to_string(g); });
    require(kind_[g] == kGeneral && owner_[g] == p,
            [&] { return "tile " + std::to_string(g) + " must be a general owned by player " + std::to_string(p); });
  }
}

void Game::set_owner(int tile, int16_t new_owner) {
  const int16_t old = owner_[tile];
  if (old == new_owner) return;
  if (old >= 0) {
    land_[old] -= 1;
    army_total_[old] -= army_[tile];
    if (kind_[tile] == kCity) events_.cities_lost[old] += 1;
  }
  if (new_owner >= 0) {
    land_[new_owner] += 1;
    army_total_[new_owner] += army_[tile];
    if (kind_[tile] == kCity) events_.cities_gained[new_owner] += 1;
  }
  owner_[tile] = new_owner;
}

void Game::add_army(int tile, int32_t delta) {
  const int32_t before = army_[tile];
  army_[tile] = static_cast<int32_t>(std::min<int64_t>(int64_t{before} + delta, kMaxArmy));
  if (owner_[tile] >= 0) army_total_[owner_[tile]] += int64_t{army_[tile]} - before;
}

int Game::alive_teammate(int player) const {
  for (int q = 0; q < num_players_; ++q) {
    if (q != player && alive_[q] && teams_[q] == teams_[player]) return q;
  }
  return -1;
}

void Game::kill(int player) {
  alive_[player] = 0;
  alive_count_ -= 1;
  if (alive_teammate(player) < 0) alive_teams_ -= 1;
  death_order_.push_back(static_cast<int16_t>(player));
  events_.eliminated[player] = 1;
}

void Game::capture_general(int victim, int captor, int general_tile) {
  const int n = num_tiles();
  for (int t = 0; t < n; ++t) {
    if (owner_[t] != victim) continue;
    add_army(t, -(army_[t] / 2));  // halved, rounding half up
    set_owner(t, static_cast<int16_t>(captor));
  }
  kind_[general_tile] = kCity;
  cities_.push_back(general_tile);
  for (auto& g : generals_) {
    if (g == general_tile) g = -1;
  }
  events_.generals_captured[captor] += 1;
  if (alive_[victim]) kill(victim);
}

bool Game::apply_move(int player, int start, int end, bool half) {
  const int n = num_tiles();
  if (start < 0 || start >= n || end < 0 || end >= n) return false;
  const int diff = std::abs(start - end);
  const bool adjacent = (diff == width_) || (diff == 1 && start / width_ == end / width_);
  if (!adjacent) return false;
  if (owner_[start] != player) return false;
  if (kind_[end] == kMountain) return false;
  const int32_t a = army_[start];
  const int32_t reserve = half ? a - a / 2 : 1;  // ceil(a / 2) without overflow
  const int32_t moved = a - reserve;
  const int16_t defender = owner_[end];
  if (team_game_ && defender >= 0 && teams_[defender] == teams_[player]) {
    // Onto its own or an ally's tile the reference checks no army, and the
    // mover takes the tile over unless it is a general.
    add_army(start, -moved);
    add_army(end, moved);
    if (kind_[end] != kGeneral) set_owner(end, static_cast<int16_t>(player));
    return true;
  }
  if (a <= 1) return false;
  add_army(start, -moved);
  if (defender == player) {
    add_army(end, moved);
    return true;
  }
  if (army_[end] >= moved) {
    add_army(end, -moved);
    return true;
  }
  const int32_t remaining = moved - army_[end];
  add_army(end, -army_[end]);
  set_owner(end, static_cast<int16_t>(player));
  add_army(end, remaining);
  if (defender >= 0 && kind_[end] == kGeneral && generals_[defender] == end) {
    capture_general(defender, player, end);
  }
  return true;
}

void Game::afk(int player) {
  if (player < 0 || player >= num_players_) return;
  if (alive_[player]) {
    kill(player);  // keeps its tiles; its general still grows and can be captured
    return;
  }
  const int g = generals_[player];
  generals_[player] = -1;
  if (g < 0 || owner_[g] != player) return;
  // Its land goes to an alive teammate when it has one, else turns neutral.
  const int heir = alive_teammate(player);
  const auto new_owner = static_cast<int16_t>(heir >= 0 ? heir : kNeutral);
  const int n = num_tiles();
  for (int t = 0; t < n; ++t) {
    if (owner_[t] == player) set_owner(t, new_owner);
  }
  kind_[g] = kCity;
  cities_.push_back(g);
}

void Game::advance() {
  tick_ += 1;
  if (tick_ % 2 == 0) {
    for (int g : generals_) {
      if (g >= 0) add_army(g, 1);
    }
    for (int c : cities_) {
      if (owner_[c] >= 0 || (neutral_city_regrowth_ && army_[c] < 40)) add_army(c, 1);
    }
  }
  if (tick_ % 50 == 0) {
    const int n = num_tiles();
    for (int t = 0; t < n; ++t) {
      if (owner_[t] >= 0) add_army(t, 1);
    }
  }
}

bool Game::decode_action(int32_t action, int& start, int& end, bool& half) const {
  const int full = height_ * width_ * 4;
  if (action < 0 || action >= 2 * full) return false;
  half = action >= full;
  const int i = half ? action - full : action;
  start = i >> 2;
  const int d = i & 3;
  const int y = start / width_ + kDy[d];
  const int x = start % width_ + kDx[d];
  if (y < 0 || y >= height_ || x < 0 || x >= width_) return false;
  end = y * width_ + x;
  return true;
}

bool Game::move_is_legal(int player, int start, int direction) const {
  if (start < 0 || start >= num_tiles() || direction < 0 || direction > 3) return false;
  if (owner_[start] != player || army_[start] < 2) return false;
  const int y = start / width_ + kDy[direction];
  const int x = start % width_ + kDx[direction];
  if (y < 0 || y >= height_ || x < 0 || x >= width_) return false;
  return kind_[y * width_ + x] != kMountain;
}

bool Game::step(const int32_t* actions) {
  begin_tick();
  const bool ascending = (tick_ % 2) == 0;
  for (int k = 0; k < num_players_; ++k) {
    const int p = ascending ? k : num_players_ - 1 - k;
    if (!alive_[p] || actions[p] == kPass) continue;
    int start, end;
    bool half;
    // Live play asks for 2 armies on every move (the action mask's rule), team games included.
    if (!decode_action(actions[p], start, end, half) || army_[start] < 2 || !apply_move(p, start, end, half)) {
      illegal_[p] += 1;
    }
  }
  advance();
  return done();
}

int Game::winner() const {
  if (!over()) return -1;
  for (int p = 0; p < num_players_; ++p) {
    if (alive_[p]) return teams_[p];
  }
  return -1;
}

StateView Game::view() const {
  StateView v{height_, width_, kind(), owner(), army(), open_directions()};
  if (team_game_) {
    v.teams = teams_.data();
    v.alive = alive_.data();
    v.num_players = num_players_;
  }
  return v;
}

void Game::visibility(int player, uint8_t* out) const { compute_visibility(view(), player, out); }

}  // namespace grl
