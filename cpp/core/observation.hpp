// Player views of a game state: the 9-channel observation tensor, fog of war
// and the action mask. They read plain (kind, owner, army) arrays so the same
// code serves live environments and experiences decoded from storage.
#pragma once

#include <cstddef>
#include <cstdint>

#include "schema.hpp"

namespace grl {

constexpr int kObservationScratchPerTile = 12;

struct ObservationConfig {
  enum Scale : uint8_t { kLinear = 0, kLog = 1 };
  Scale scale = kLinear;
  float army_scale = 1000.0f;  // linear: min(army / s, 1); log: min(log1p(army) / log1p(s), 1)
  // A 10th channel: 1 on tiles in fog holding a mountain or a city, the
  // "obstacles" the real generals.io client shows through the fog.
  bool obstacles = false;
  // kObservationChannels (schema.hpp), plus one with obstacles.
  int channels() const { return kObservationChannels + (obstacles ? 1 : 0); }
};

struct StateView {
  int height, width;
  const uint8_t* kind;
  const int16_t* owner;
  const int32_t* army;
  const uint8_t* open_directions = nullptr;  // compute_open_directions of kind, when known
  // Team games: each player's team and whether it is alive (num_players
  // entries); null in free-for-all, where every player is on its own.
  const int32_t* teams = nullptr;
  const uint8_t* alive = nullptr;
  int num_players = 0;
};

// Bit q set for every player q on `player`'s team, the player included; with
// alive_only, teammates only while they are alive.
uint32_t team_players(const StateView& s, int player, bool alive_only);

// Writes height*width bytes: 1 where the player sees the tile (3x3 around its
// tiles and those of its alive teammates).
void compute_visibility(const StateView& s, int player, uint8_t* visible);

// Writes 9*height*width floats, channel-major: own armies, enemy armies (visible),
// own territory, enemy territory (visible; teammates are not enemies), neutral territory (visible), cities
// and generals (visible), mountains (visible), visible, fog. A hidden tile sets
// only the fog channel (and, with config.obstacles, the 10th channel when it holds a
// mountain or a city). `scratch` holds kObservationScratchPerTile*height*width bytes.
void encode_observation(const StateView& s, int player, const ObservationConfig& config, float* out,
                        uint8_t* scratch);

// Copies `count` floats with non-temporal (streaming) stores where the CPU has
// them: the destination's cache lines are neither read before they are
// overwritten nor kept, which halves the memory traffic of outputs too large
// to stay cached. Fenced: the floats are visible to other threads on return.
void stream_floats(float* out, const float* in, size_t count);

// s.open_directions, or compute_open_directions of s.kind into a buffer of the
// calling thread (valid until its next call).
const uint8_t* open_directions_of(const StateView& s);

// Writes height*width bytes: the directions a move can take from each tile
// (bit d: direction d), its open directions where the player owns it with at
// least 2 armies, else none.
void movable_tiles(const StateView& s, int player, uint8_t* out);

// Writes height*width*4 bools: full move (tile, direction) legal now.
void encode_action_mask(const StateView& s, int player, uint8_t* out);

}  // namespace grl
