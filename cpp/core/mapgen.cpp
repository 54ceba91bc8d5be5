#include "mapgen.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "rng.hpp"

namespace grl {

namespace {

// `message()` makes the error's text, only when there is an error.
template <typename Message>
void require(bool ok, const char* field, const Message& message) {
  if (!ok) throw std::invalid_argument(std::string("map option ") + field + ": " + message());
}

int default_general_distance(int players) { return players == 2 ? 15 : std::max(5, 12 - players / 2); }

// Breadth-first distances from the given sources through non-mountain tiles.
void distances_from(const std::vector<int>& sources, const std::vector<uint8_t>& kind, int h, int w,
                    std::vector<int>& dist) {
  dist.assign(kind.size(), -1);
  std::vector<int> queue;
  queue.reserve(kind.size());
  for (int s : sources) {
    dist[s] = 0;
    queue.push_back(s);
  }
  for (size_t head = 0; head < queue.size(); ++head) {
    const int t = queue[head];
    const int y = t / w, x = t % w;
    for (int d = 0; d < 4; ++d) {
      const int ny = y + kDy[d], nx = x + kDx[d];
      if (ny < 0 || ny >= h || nx < 0 || nx >= w) continue;
      const int u = ny * w + nx;
      if (dist[u] >= 0 || kind[u] == kMountain) continue;
      dist[u] = dist[t] + 1;
      queue.push_back(u);
    }
  }
}

// Places `players` generals on plain tiles of one connected region, pairwise
// at least `min_distance` apart along paths; false when impossible this try.
bool place_generals(const std::vector<uint8_t>& kind, int h, int w, int players, int min_distance,
                    Rng& rng, std::vector<int>& generals) {
  std::vector<int> plain;
  for (size_t t = 0; t < kind.size(); ++t) {
    if (kind[t] == kPlain) plain.push_back(static_cast<int>(t));
  }
  if (static_cast<int>(plain.size()) < players) return false;
  generals.assign(1, plain[rng.below(static_cast<uint32_t>(plain.size()))]);
  std::vector<int> dist, candidates;
  std::vector<int> reachable;
  distances_from(generals, kind, h, w, reachable);
  while (static_cast<int>(generals.size()) < players) {
    distances_from(generals, kind, h, w, dist);
    candidates.clear();
    for (int t : plain) {
      if (reachable[t] >= 0 && dist[t] >= min_distance) candidates.push_back(t);
    }
    if (candidates.empty()) return false;
    generals.push_back(candidates[rng.below(static_cast<uint32_t>(candidates.size()))]);
  }
  return true;
}

}  // namespace

void validate(const MapOptions& o) {
  require(o.players >= 2 && o.players <= kMaxPlayers, "players",
          [&] { return "must be between 2 and 16, got " + std::to_string(o.players); });
  require(o.min_side >= 2, "min_side", [&] { return "must be at least 2, got " + std::to_string(o.min_side); });
  require(o.max_side >= o.min_side, "max_side",
          [&] { return "must be at least min_side (" + std::to_string(o.min_side) + "), got " +
              std::to_string(o.max_side); });
  require(o.max_side <= kMaxEnvSide, "max_side",
          [&] { return "must be at most " + std::to_string(kMaxEnvSide) + ", got " + std::to_string(o.max_side); });
  require(o.min_side * o.min_side >= o.players, "min_side",
          [&] { return std::to_string(o.min_side) + "x" + std::to_string(o.min_side) + " has fewer tiles than " +
              std::to_string(o.players) + " players"; });
  require(o.mountain_fraction >= 0.0 && o.mountain_fraction <= 0.6, "mountain_fraction",
          [&] { return "must be within [0, 0.6], got " + std::to_string(o.mountain_fraction); });
  require(o.cities >= -1, "cities", [&] { return "must be -1 (automatic) or >= 0, got " + std::to_string(o.cities); });
  require(o.city_army_min >= 0 && o.city_army_max >= o.city_army_min, "city_army_max",
          [&] { return "city armies need 0 <= city_army_min <= city_army_max, got " +
              std::to_string(o.city_army_min) + ".." + std::to_string(o.city_army_max); });
  require(o.min_general_distance >= -1, "min_general_distance",
          [&] { return "must be -1 (automatic) or >= 0, got " + std::to_string(o.min_general_distance); });
  for (const auto& [name, pad] : {std::pair{"pad_height", o.pad_height}, std::pair{"pad_width", o.pad_width}}) {
    require(pad == 0 || (pad >= o.max_side && pad <= kMaxEnvSide), name,
            [&] { return "must be 0 or in " + std::to_string(o.max_side) + ".." + std::to_string(kMaxEnvSide) +
                " (at least max_side), got " + std::to_string(pad); });
  }
}

MapSpec generate_map(const MapOptions& o, uint64_t seed) {
  validate(o);
  Rng rng(seed);
  const int h = rng.range(o.min_side, o.max_side);
  const int w = rng.range(o.min_side, o.max_side);
  const int n = h * w;
  const int target_distance = std::min(
      o.min_general_distance >= 0 ? o.min_general_distance : default_general_distance(o.players),
      h + w - 2);
  const int wanted_mountains = static_cast<int>(std::lround(n * o.mountain_fraction));
  const int wanted_cities = o.cities >= 0 ? o.cities : static_cast<int>(std::lround(n / 40.0));

  std::vector<uint8_t> kind;
  std::vector<int> order(n), generals;
  for (int attempt = 0;; ++attempt) {
    // Each failed try relaxes the distance a little; late tries drop mountains.
    const int min_distance = std::max(1, target_distance - attempt / 4);
    const int mountains = attempt >= 60 ? 0 : std::min(wanted_mountains, n - o.players);
    const int cities = std::min(wanted_cities, n - o.players - mountains);
    for (int i = 0; i < n; ++i) order[i] = i;
    for (int i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(static_cast<uint32_t>(i + 1))]);
    kind.assign(n, kPlain);
    for (int i = 0; i < mountains; ++i) kind[order[i]] = kMountain;
    for (int i = mountains; i < mountains + cities; ++i) kind[order[i]] = kCity;
    if (place_generals(kind, h, w, o.players, min_distance, rng, generals)) break;
    if (attempt >= 200) {
      throw std::invalid_argument("map option players: cannot place " + std::to_string(o.players) +
                                  " generals on a " + std::to_string(h) + "x" + std::to_string(w) +
                                  " board");
    }
  }

  MapSpec spec;
  spec.height = o.pad_height > 0 ? o.pad_height : h;
  spec.width = o.pad_width > 0 ? o.pad_width : w;
  const size_t total = static_cast<size_t>(spec.height) * spec.width;
  spec.kind.assign(total, kMountain);
  spec.owner.assign(total, kNeutral);
  spec.army.assign(total, 0);
  auto padded = [&](int t) { return (t / w) * spec.width + (t % w); };
  for (int t = 0; t < n; ++t) {
    const int p = padded(t);
    spec.kind[p] = kind[t];
    if (kind[t] == kCity) spec.army[p] = rng.range(o.city_army_min, o.city_army_max);
  }
  for (int player = 0; player < o.players; ++player) {
    const int p = padded(generals[player]);
    spec.kind[p] = kGeneral;
    spec.owner[p] = static_cast<int16_t>(player);
    spec.army[p] = 1;
    spec.generals.push_back(p);
  }
  return spec;
}

}  // namespace grl
