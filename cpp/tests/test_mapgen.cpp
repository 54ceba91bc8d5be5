// Map generation: deterministic per seed, valid boards, options checked.
#include <doctest/doctest.h>

#include <stdexcept>

#include "game.hpp"
#include "mapgen.hpp"

namespace {

bool same_map(const grl::MapSpec& a, const grl::MapSpec& b) {
  return a.height == b.height && a.width == b.width && a.kind == b.kind && a.owner == b.owner &&
         a.army == b.army && a.generals == b.generals;
}

}  // namespace

TEST_CASE("map generation") {
  grl::MapOptions options;
  CHECK(same_map(grl::generate_map(options, 42), grl::generate_map(options, 42)));
  CHECK(!same_map(grl::generate_map(options, 42), grl::generate_map(options, 43)));
  for (int players : {2, 5, 16}) {
    options.players = players;
    for (uint64_t seed = 0; seed < 5; ++seed) {
      const grl::MapSpec map = grl::generate_map(options, seed);
      CHECK((map.height >= 18 && map.height <= 23 && map.width >= 18 && map.width <= 23));
      CHECK(static_cast<int>(map.generals.size()) == players);
      int mountains = 0;
      for (uint8_t k : map.kind) mountains += k == grl::kMountain;
      const double fraction = static_cast<double>(mountains) / map.kind.size();
      CHECK((fraction > 0.19 && fraction < 0.21));
      grl::Game game(map);  // a valid board
      CHECK(game.num_players() == players);
    }
  }
  options = grl::MapOptions{};
  options.pad_height = 30;
  options.pad_width = 25;
  const grl::MapSpec padded = grl::generate_map(options, 7);
  CHECK((padded.height == 30 && padded.width == 25));
  CHECK(padded.kind[30 * 25 - 1] == grl::kMountain);

  grl::MapOptions bad;
  bad.players = 17;
  CHECK_THROWS_WITH_AS(grl::validate(bad), doctest::Contains("map option players"), std::invalid_argument);
  bad = grl::MapOptions{};
  bad.mountain_fraction = 0.9;
  CHECK_THROWS_WITH_AS(grl::generate_map(bad, 0), doctest::Contains("map option mountain_fraction"), std::invalid_argument);
}
