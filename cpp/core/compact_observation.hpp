// Compact player views: per tile one byte saying what the tile is to the
// player (its tile code) and the army the player sees there, plus the action
// mask packed as bits. Expanding them gives the float observation and the
// bool mask bit for bit: encode_observation itself is encode + expand.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "game.hpp"
#include "observation.hpp"

namespace grl {

class ThreadPool;

// Tile codes. Hidden tiles: kCodeFog, or kCodeFogObstacle for a mountain or a
// city when ObservationConfig::obstacles is on. Visible tiles:
// visible_code(relation, kind), kind as in Tile.
enum TileRelation : uint8_t { kRelationNeutral = 0, kRelationOwn = 1, kRelationEnemy = 2, kRelationTeam = 3 };
constexpr uint8_t kCodeFog = 0;
constexpr uint8_t kCodeFogObstacle = 1;
constexpr uint8_t kFirstVisibleCode = 2;
constexpr int kTileCodes = kFirstVisibleCode + 4 * 4;  // codes are 0 .. kTileCodes - 1
constexpr uint8_t visible_code(int relation, int kind) {
  return static_cast<uint8_t>(kFirstVisibleCode + 4 * relation + kind);
}

// The meaning of every observation channel: bit `code` of kChannelCodes[c] is
// set when a tile of that code has a 1 in channel c. The first
// kArmyChannels channels hold the tile's scaled army instead of the 1.
constexpr int kArmyChannels = 2;
constexpr int kMaxObservationChannels = kObservationChannels + 1;
constexpr std::array<uint32_t, kMaxObservationChannels> kChannelCodes = [] {
  auto codes_of = [](auto wanted) {
    uint32_t set = 0;
    for (int relation = 0; relation < 4; ++relation) {
      for (int kind = 0; kind < 4; ++kind) {
        if (wanted(relation, kind)) set |= 1u << visible_code(relation, kind);
      }
    }
    return set;
  };
  const uint32_t own = codes_of([](int r, int) { return r == kRelationOwn; });
  const uint32_t enemy = codes_of([](int r, int) { return r == kRelationEnemy; });
  return std::array<uint32_t, kMaxObservationChannels>{
      own,                                                                                  // own armies
      enemy,                                                                                // enemy armies
      own,                                                                                  // own territory
      enemy,                                                                                // enemy territory
      codes_of([](int r, int k) { return r == kRelationNeutral && k != kMountain; }),      // neutral territory
      codes_of([](int, int k) { return k == kCity || k == kGeneral; }),                     // cities and generals
      codes_of([](int, int k) { return k == kMountain; }),                                  // mountains
      codes_of([](int, int) { return true; }),                                              // visible
      (1u << kCodeFog) | (1u << kCodeFogObstacle),                                          // fog
      1u << kCodeFogObstacle,                                                               // obstacles
  };
}();

// The codes of the player's own tiles and of seen mountains (bit per code):
// what an action mask is made from (the own-territory and mountain channels).
constexpr uint32_t kOwnTileCodes = kChannelCodes[2];
constexpr uint32_t kMountainCodes = kChannelCodes[6];

// Narrow compact armies are uint16 and saturate at kNarrowArmyMax. Up to
// kNarrowArmyScaleMax of army_scale every army from kNarrowArmyMax up expands
// to 1.0 with either scaling, so narrow armies expand exactly; above it a
// compact view keeps int32 armies (the wide form).
constexpr int32_t kNarrowArmyMax = 65535;
constexpr float kNarrowArmyScaleMax = 32768.0f;
inline bool needs_wide_armies(const ObservationConfig& config) { return config.army_scale > kNarrowArmyScaleMax; }
// Byte armies (the stream's views when every army of a batch fits) never saturate.
constexpr int32_t kByteArmyMax = 255;

// The width of compact armies: bytes, narrow (uint16, saturating) or wide (int32).
enum class ArmyWidth : uint8_t { kByte = 1, kNarrow = 2, kWide = 4 };
constexpr size_t army_bytes(ArmyWidth width) { return static_cast<size_t>(width); }

// Bytes of one packed action mask of `tiles` tiles: 4 bits a tile, bit
// i % 8 of byte i / 8 for mask entry i (numpy's bitorder="little").
constexpr size_t packed_mask_bytes(size_t tiles) { return (tiles * 4 + 7) / 8; }

// Writes the player's tile codes and visible armies (0 in fog; narrow ones
// saturated) for one board. `scratch` holds kObservationScratchPerTile bytes a tile.
void encode_compact(const StateView& s, int player, bool obstacles, uint8_t* codes, uint8_t* armies,
                    uint8_t* scratch);
void encode_compact(const StateView& s, int player, bool obstacles, uint8_t* codes, uint16_t* armies,
                    uint8_t* scratch);
void encode_compact(const StateView& s, int player, bool obstacles, uint8_t* codes, int32_t* armies,
                    uint8_t* scratch);

// The largest of `n` armies (0 when n is 0).
int32_t max_army(const int32_t* army, size_t n);

// Byte armies widened.
void widen_armies(const uint8_t* armies, size_t n, uint16_t* out);
void widen_armies(const uint8_t* armies, size_t n, int32_t* out);

// encode_action_mask, packed (packed_mask_bytes(tiles) bytes).
void encode_packed_action_mask(const StateView& s, int player, uint8_t* out);

// The scaled army value of one army: the one definition of army scaling.
float army_value(int64_t army, const ObservationConfig& config);

// Expands `rows` compact views of `tiles` tiles each into float observations
// (rows, config.channels(), tiles). Codes must be below kTileCodes (checked by
// the caller). Spread over `pool` when given and the batch is large.
void expand_observations(const uint8_t* codes, const uint8_t* armies, size_t rows, size_t tiles,
                         const ObservationConfig& config, float* out, ThreadPool* pool = nullptr);
void expand_observations(const uint8_t* codes, const uint16_t* armies, size_t rows, size_t tiles,
                         const ObservationConfig& config, float* out, ThreadPool* pool = nullptr);
void expand_observations(const uint8_t* codes, const int32_t* armies, size_t rows, size_t tiles,
                         const ObservationConfig& config, float* out, ThreadPool* pool = nullptr);

// The packed action masks of compact views, from the views alone: an own tile
// with 2 or more armies is open towards each neighbour on the board that is not
// a mountain (an own tile sees its neighbours, so its view knows them). Equal to
// encode_packed_action_mask of the view's state and player. Row i is the mask
// of view `views[i]`; codes below kTileCodes and view indices are checked by the caller.
void view_action_masks(const uint8_t* codes, const uint8_t* armies, const int32_t* views, size_t rows, int height,
                       int width, uint8_t* out, ThreadPool* pool = nullptr);
void view_action_masks(const uint8_t* codes, const uint16_t* armies, const int32_t* views, size_t rows, int height,
                       int width, uint8_t* out, ThreadPool* pool = nullptr);
void view_action_masks(const uint8_t* codes, const int32_t* armies, const int32_t* views, size_t rows, int height,
                       int width, uint8_t* out, ThreadPool* pool = nullptr);

// Unpacks `rows` packed masks into bools (rows, tiles * 4).
void unpack_action_masks(const uint8_t* packed, size_t rows, size_t tiles, uint8_t* out, ThreadPool* pool = nullptr);

// Compact views of many (game, player) rows: codes, and armies in one of the
// two widths (the other stays empty).
struct CompactViews {
  bool wide = false;
  size_t tiles = 0;
  std::vector<uint8_t> codes;        // (rows, tiles)
  std::vector<uint16_t> armies;      // (rows, tiles), narrow
  std::vector<int32_t> wide_armies;  // (rows, tiles), wide

  void assign(size_t rows, size_t tiles_per_row, bool wide_form);
  void write(size_t row, const StateView& s, int player, bool obstacles, uint8_t* scratch);
};

// A state table: each state's kind/owner/army of height*width tiles.
struct StateTable {
  int height, width;
  const uint8_t* kind;
  const int16_t* owner;
  const int32_t* army;
};

// Where compact views of rows go: codes (rows, tiles), and armies (rows,
// tiles) of `width`, aligned to it.
struct CompactRowsOut {
  uint8_t* codes;
  void* armies;
  ArmyWidth width;
};

// Compact views of rows of a state table (rows name a state and a player):
// codes and armies of each row's state, and with `masks` its packed action
// mask. Indices are checked by the caller.
void encode_compact_rows(const StateTable& states, const int32_t* state_index, const int32_t* player, size_t rows,
                         bool obstacles, CompactRowsOut out, uint8_t* masks, ThreadPool* pool = nullptr);

// Compact views of experiences: each row's state (and with `masks` its packed
// action mask) and its next state. A next state that is some row's state for
// the same player is copied from that row's views instead of being computed
// again (in a batch read from the buffer, almost all of them are). Both
// outputs hold armies of the same width.
void encode_compact_experiences(const StateTable& states, const int32_t* state_index, const int32_t* next_state_index,
                                const int32_t* player, size_t rows, bool obstacles, CompactRowsOut state,
                                CompactRowsOut next_state, uint8_t* masks, ThreadPool* pool = nullptr);

// The distinct (state, player) views of experiences, as the compact stream
// sends them: views 0 .. rows-1 are the rows' state views, in row order; a
// next state that is no row's state for the same player gets a view after
// them (in a batch read from the buffer only the last tick of each game does).
struct ExperienceViews {
  std::vector<int32_t> next_state_view;  // per row: the view of its next state
  std::vector<int32_t> view_state;       // per view: its state and player
  std::vector<int32_t> view_player;
};
// Indices are checked by the caller.
ExperienceViews plan_experience_views(const int32_t* state_index, const int32_t* next_state_index,
                                      const int32_t* player, size_t rows);

// Compact views stored as one value a tile (TFRecord's compact records):
// army << kViewArmyShift | tile code.
constexpr int kViewArmyShift = 5;
static_assert(kTileCodes <= 1 << kViewArmyShift);

// Index of the first code >= kTileCodes, or -1.
int64_t find_invalid_code(const uint8_t* codes, size_t count);

}  // namespace grl
