// Hand-drawn boards for the engine's tests.
#pragma once

#include <cstdint>

#include "game.hpp"

namespace grl::testing {

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

}  // namespace grl::testing
