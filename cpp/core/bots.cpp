#include "bots.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#include "observation.hpp"
#include "rng.hpp"
#include "vectorize.hpp"

namespace grl {

namespace {

inline uint32_t bit_count4(uint32_t b) { return (b & 1) + (b >> 1 & 1) + (b >> 2 & 1) + (b >> 3 & 1); }

// Counts the legal moves, draws one index, then finds it: one draw per move.
GRL_VECTOR_CLONES
int32_t random_move(const Game& g, int player, Rng& rng) {
  const int n = g.num_tiles();
  const int16_t* owner = g.owner();
  const int32_t* army = g.army();
  const uint8_t* open = g.open_directions();
  uint32_t count = 0;
  const int16_t p = static_cast<int16_t>(player);
  for (int t = 0; t < n; ++t) count += ((owner[t] == p) & (army[t] >= 2)) * bit_count4(open[t]);
  if (count == 0) return kPass;
  uint32_t pick = rng.below(count);
  for (int t = 0; t < n; ++t) {
    if (owner[t] != player || army[t] < 2) continue;
    const uint32_t k = bit_count4(open[t]);
    if (pick >= k) {
      pick -= k;
      continue;
    }
    for (int d = 0; d < 4; ++d) {
      if ((open[t] >> d & 1) && pick-- == 0) return t * 4 + d;
    }
  }
  return kPass;
}

// random_move drawn from the legal moves the env's mask pass already found
// (mask entry t * 4 + d is move t * 4 + d): the same draw, without scanning
// the board again. Packed masks: bit i % 8 of byte i / 8. Cloned so that
// popcount is the CPU's instruction, not a library call (baseline x86-64
// lacks it).
GRL_VECTOR_CLONES
int32_t random_move_packed(const uint8_t* mask, size_t bytes, Rng& rng) {
  auto word_at = [&](size_t k) {
    uint64_t word = 0;
    std::memcpy(&word, mask + 8 * k, std::min<size_t>(8, bytes - 8 * k));
    return word;
  };
  const size_t words = (bytes + 7) / 8;
  uint32_t count = 0;
  for (size_t k = 0; k < words; ++k) count += static_cast<uint32_t>(std::popcount(word_at(k)));
  if (count == 0) return kPass;
  uint32_t pick = rng.below(count);
  for (size_t k = 0;; ++k) {
    uint64_t word = word_at(k);
    const auto here = static_cast<uint32_t>(std::popcount(word));
    if (pick >= here) {
      pick -= here;
      continue;
    }
    for (; pick > 0; --pick) word &= word - 1;  // drop the lower set bits
    return static_cast<int32_t>(64 * k + std::countr_zero(word));
  }
}

GRL_VECTOR_CLONES
uint32_t count_set(const uint8_t* mask, size_t entries) {
  uint32_t count = 0;
  for (size_t i = 0; i < entries; ++i) count += mask[i];
  return count;
}

GRL_VECTOR_CLONES  // popcount, as above
int32_t random_move_bools(const uint8_t* mask, size_t entries, Rng& rng) {
  const uint32_t count = count_set(mask, entries);
  if (count == 0) return kPass;
  uint32_t pick = rng.below(count);
  // Entries are 0 or 1, so a word's popcount is the number of its 8 entries set:
  // whole words before the pick are skipped, the last one is scanned.
  size_t i = 0;
  for (; i + 8 <= entries; i += 8) {
    uint64_t word = 0;
    std::memcpy(&word, mask + i, 8);
    const auto here = static_cast<uint32_t>(std::popcount(word));
    if (pick < here) break;
    pick -= here;
  }
  for (; i < entries; ++i) {
    if (mask[i] && pick-- == 0) return static_cast<int32_t>(i);
  }
  return kPass;
}

struct HeuristicScratch {
  std::vector<uint8_t> visible;
  std::vector<int32_t> dist;
  std::vector<int32_t> queue;
};

int32_t heuristic_move(const Game& g, int player, HeuristicScratch& s) {
  const int h = g.height(), w = g.width(), n = h * w;
  const int16_t* owner = g.owner();
  const int32_t* army = g.army();
  const uint8_t* kind = g.kind();
  const StateView view = g.view();
  compute_visibility(view, player, s.visible.data());
  // Teammates' tiles are neither goals nor obstacles: moving onto them merges.
  const uint32_t friends = team_players(view, player, false);
  auto enemy = [&](int t) { return owner[t] >= 0 && !(friends >> owner[t] & 1); };

  int main_tile = -1;
  bool enemy_general_seen = false, enemy_seen = false;
  for (int t = 0; t < n; ++t) {
    if (owner[t] == player) {
      if (main_tile < 0 || army[t] > army[main_tile]) main_tile = t;
    } else if (s.visible[t] && enemy(t)) {
      enemy_seen = true;
      enemy_general_seen |= kind[t] == kGeneral;
    }
  }
  if (main_tile < 0) return kPass;

  // A visible enemy general that one move captures is taken before anything
  // else: the game ends there, and a demonstrator that walks past it teaches
  // a learner that the capture is worth little.
  if (enemy_general_seen) {
    for (int t = 0; t < n; ++t) {
      if (owner[t] != player || army[t] < 2) continue;
      for (int d = 0; d < 4; ++d) {
        const int u = neighbor(t, d, h, w);
        const bool takes = u >= 0 && kind[u] == kGeneral && s.visible[u] && enemy(u) && army[t] - 1 > army[u];
        if (takes) return t * 4 + d;
      }
    }
  }

  // Expand on even ticks: a small own tile takes an adjacent empty neutral tile.
  if (g.tick() % 2 == 0) {
    for (int t = 0; t < n; ++t) {
      if (t == main_tile || owner[t] != player || army[t] < 2) continue;
      for (int d = 0; d < 4; ++d) {
        const int u = neighbor(t, d, h, w);
        if (u >= 0 && owner[u] == kNeutral && kind[u] == kPlain && army[u] + 1 < army[t]) return t * 4 + d;
      }
    }
  }
  if (army[main_tile] < 2) return kPass;

  // March the largest army down a breadth-first distance field from the goals.
  auto is_goal = [&](int t) {
    if (owner[t] == player || kind[t] == kMountain || (owner[t] >= 0 && !enemy(t))) return false;
    if (enemy_general_seen) return s.visible[t] && kind[t] == kGeneral && enemy(t);
    if (enemy_seen) return s.visible[t] && enemy(t);
    return kind[t] == kPlain || army[t] + 1 < army[main_tile];
  };
  auto passable = [&](int t) {
    if (kind[t] == kMountain) return false;
    return owner[t] == player || (owner[t] >= 0 && !enemy(t)) || kind[t] == kPlain ||
           army[t] + 1 < army[main_tile];
  };
  std::fill(s.dist.begin(), s.dist.end(), -1);
  s.queue.clear();
  for (int t = 0; t < n; ++t) {
    if (is_goal(t)) {
      s.dist[t] = 0;
      s.queue.push_back(t);
    }
  }
  for (size_t head = 0; head < s.queue.size(); ++head) {
    const int t = s.queue[head];
    if (t == main_tile) break;
    for (int d = 0; d < 4; ++d) {
      const int u = neighbor(t, d, h, w);
      if (u < 0 || s.dist[u] >= 0 || !passable(u)) continue;
      s.dist[u] = s.dist[t] + 1;
      s.queue.push_back(u);
    }
  }
  int best = kPass, best_dist = s.dist[main_tile] >= 0 ? s.dist[main_tile] : 1 << 30;
  for (int d = 0; d < 4; ++d) {
    const int u = neighbor(main_tile, d, h, w);
    if (u >= 0 && s.dist[u] >= 0 && s.dist[u] < best_dist) {
      best_dist = s.dist[u];
      best = main_tile * 4 + d;
    }
  }
  return best;
}

}  // namespace

void random_policy(VecEnv& env, uint64_t seed, uint64_t call, const uint8_t* act_for, int32_t* actions) {
  const int players = env.players();
  // The env's masks are those of the current boards (written by every reset and step).
  const bool masks = env.config().action_masks;
  const bool packed = env.config().format == VecEnvConfig::Format::kCompact;
  const size_t tiles = static_cast<size_t>(env.height()) * env.width();
  const size_t mask_size = packed ? packed_mask_bytes(tiles) : tiles * 4;
  env.parallel_for([&](int begin, int end) {
    for (int i = begin; i < end; ++i) {
      uint64_t mix = seed ^ (call * 0x9E3779B97F4A7C15ULL);
      Rng rng(splitmix64(mix) ^ (static_cast<uint64_t>(i) * 0xD1B54A32D192ED03ULL));
      const Game& g = env.game(i);
      for (int p = 0; p < players; ++p) {
        if (!act_for[p]) continue;
        const size_t row = static_cast<size_t>(i) * players + p;
        const uint8_t* mask = masks ? env.action_masks.data() + row * mask_size : nullptr;
        if (!g.alive(p)) actions[row] = kPass;
        else if (!mask) actions[row] = random_move(g, p, rng);
        else if (packed) actions[row] = random_move_packed(mask, mask_size, rng);
        else actions[row] = random_move_bools(mask, mask_size, rng);
      }
    }
  });
}

void heuristic_policy(VecEnv& env, const uint8_t* act_for, int32_t* actions) {
  const int players = env.players();
  const size_t tiles = static_cast<size_t>(env.height()) * env.width();
  env.parallel_for([&](int begin, int end) {
    HeuristicScratch scratch{std::vector<uint8_t>(tiles), std::vector<int32_t>(tiles), {}};
    scratch.queue.reserve(tiles);
    for (int i = begin; i < end; ++i) {
      const Game& g = env.game(i);
      for (int p = 0; p < players; ++p) {
        if (!act_for[p]) continue;
        actions[static_cast<size_t>(i) * players + p] = g.alive(p) ? heuristic_move(g, p, scratch) : kPass;
      }
    }
  });
}

}  // namespace grl
