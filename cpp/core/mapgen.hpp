// Map generation in the manner of generals.io's 1v1 and FFA maps.
#pragma once

#include <cstdint>

#include "game.hpp"

namespace grl {

struct MapOptions {
  int players = 2;
  int min_side = 18;  // board sides are drawn from [min_side, max_side]
  int max_side = 23;
  double mountain_fraction = 0.2;
  int cities = -1;  // -1: about one per 40 tiles (10 on a 20x20 board)
  int city_army_min = 40;
  int city_army_max = 50;
  int min_general_distance = -1;  // -1: 15 for 1v1, less for more players
  // The board is placed in the top-left corner of a pad_height x pad_width
  // board of mountains (0: no padding), so batches share one shape.
  int pad_height = 0;
  int pad_width = 0;
};

// Validates the options; throws std::invalid_argument naming the bad field.
void validate(const MapOptions& options);

// Same seed and options, same map, on every platform. Generals are always
// joined by a path that avoids mountains.
MapSpec generate_map(const MapOptions& options, uint64_t seed);

}  // namespace grl
