// The experience schema and the limits around it, defined once: the columns of
// a batch, the tile code of stored states, the record flags, the player and
// board limits and the observation channels. The batch structs, the batch
// code, the bindings and (through _core) the Python package, the wire packing
// and every storage format derive theirs from here.
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>

namespace grl {

// ---- limits ------------------------------------------------------------------

constexpr int kMaxPlayers = 16;  // players of a game: 0..kMaxPlayers-1
// The largest board side of any board that enters the engine (explicit boards,
// replays, stored states): keeps tile and action indices (H*W*8) far inside int32.
constexpr int kMaxBoardSide = 1024;
// The largest side of generated maps and of VecEnv and buffer boards.
constexpr int kMaxEnvSide = 256;

// ---- tiles -------------------------------------------------------------------

enum Tile : uint8_t { kPlain = 0, kMountain = 1, kCity = 2, kGeneral = 3 };
constexpr int16_t kNeutral = -1;

// A stored tile in one byte: kind << kTileKindShift | (owner + 1), owner -1
// (neutral) to kMaxPlayers - 1; armies beside it in 16 bits when they fit.
constexpr int kTileKindShift = 5;
constexpr uint8_t kTileOwnerMask = (1u << kTileKindShift) - 1;
constexpr uint32_t kMaxCompactArmy = 0xFFFF;
static_assert(kMaxPlayers <= kTileOwnerMask, "the owner field must hold every player and neutral");
static_assert(kGeneral << kTileKindShift <= 0xFF, "the kind field must fit the byte");

constexpr uint8_t tile_code(uint8_t kind, int16_t owner) {
  return static_cast<uint8_t>(kind << kTileKindShift | (owner + 1));
}
constexpr uint8_t tile_kind(uint8_t code) { return code >> kTileKindShift; }
constexpr int16_t tile_owner(uint8_t code) { return static_cast<int16_t>((code & kTileOwnerMask) - 1); }

// ---- records -----------------------------------------------------------------

// The flag bits of a stored record (and of the packed wire form).
enum ExperienceFlags : uint8_t { kLegal = 1, kTerminated = 2, kTruncated = 4 };
constexpr uint8_t kAllFlags = kLegal | kTerminated | kTruncated;

// ---- batch columns -----------------------------------------------------------
// X(name, Stored, Exposed, dtype, shape): the C++ element type of the column,
// the element type Python sees (bool columns are stored as bytes), the numpy
// dtype string and the per-row shape, dimension names separated by commas:
// "channels", "height", "width", and "moves" for height * width * 4.

// Every experience: one value per row, in both batch forms.
#define GRL_RECORD_COLUMNS(X)                    \
  X(sequence, uint64_t, uint64_t, "<u8", "")     \
  X(game_id, uint64_t, uint64_t, "<u8", "")      \
  X(player_id, int32_t, int32_t, "<i4", "")      \
  X(tick, int32_t, int32_t, "<i4", "")           \
  X(action, int32_t, int32_t, "<i4", "")         \
  X(reward, float, float, "<f4", "")             \
  X(legal, uint8_t, bool, "|b1", "")             \
  X(terminated, uint8_t, bool, "|b1", "")        \
  X(truncated, uint8_t, bool, "|b1", "")

// Sampling on request only (empty otherwise): prioritized importance weights,
// and the n-step return, its length and whether it ended in a termination.
#define GRL_SAMPLE_COLUMNS(X)                    \
  X(weight, float, float, "<f4", "")             \
  X(nstep_reward, float, float, "<f4", "")       \
  X(nstep_length, int32_t, int32_t, "<i4", "")   \
  X(nstep_done, uint8_t, bool, "|b1", "")

// Raw form: each row's states as rows of the state tables.
#define GRL_STATE_INDEX_COLUMNS(X)                  \
  X(state_index, int32_t, int32_t, "<i4", "")       \
  X(next_state_index, int32_t, int32_t, "<i4", "")

// Raw form: the distinct boards of a batch, one row per state (not per experience).
#define GRL_STATE_TABLES(X)                                         \
  X(state_kind, uint8_t, uint8_t, "|u1", "height,width")            \
  X(state_owner, int16_t, int16_t, "<i2", "height,width")           \
  X(state_army, int32_t, int32_t, "<i4", "height,width")

// Raw form, n-step sampling only: the state to bootstrap from.
#define GRL_STATE_INDEX_SAMPLE_COLUMNS(X) X(nstep_next_state_index, int32_t, int32_t, "<i4", "")

// Decoded form: observation tensors of each row and the mask of its state.
#define GRL_DECODED_COLUMNS(X)                                      \
  X(state, float, float, "<f4", "channels,height,width")            \
  X(next_state, float, float, "<f4", "channels,height,width")       \
  X(action_mask, uint8_t, bool, "|b1", "moves")

// Decoded form, n-step sampling only: the observation to bootstrap from.
#define GRL_DECODED_SAMPLE_COLUMNS(X) X(nstep_next_state, float, float, "<f4", "channels,height,width")

// A column's description, for exporting the schema.
struct ColumnSpec {
  const char* name;
  const char* dtype;
  const char* shape;
};

// Passed to a column visitor: the column's description and, as `type`, the
// element type Python sees.
template <typename Exposed>
struct ColumnInfo : ColumnSpec {
  using type = Exposed;
};

// for_each_*(batch, f) calls f(ColumnInfo<Exposed>{...}, batch.column) for
// each column of a list, in order.
#define GRL_VISIT_COLUMN(name, Stored, Exposed, dtype, shape) f(ColumnInfo<Exposed>{{#name, dtype, shape}}, batch.name);
#define GRL_DEFINE_VISITOR(function, LIST) \
  template <typename Batch, typename F>    \
  void function(Batch& batch, F&& f) {     \
    LIST(GRL_VISIT_COLUMN)                 \
  }
GRL_DEFINE_VISITOR(for_each_record_column, GRL_RECORD_COLUMNS)
GRL_DEFINE_VISITOR(for_each_sample_column, GRL_SAMPLE_COLUMNS)
GRL_DEFINE_VISITOR(for_each_state_index_column, GRL_STATE_INDEX_COLUMNS)
GRL_DEFINE_VISITOR(for_each_state_index_sample_column, GRL_STATE_INDEX_SAMPLE_COLUMNS)
GRL_DEFINE_VISITOR(for_each_state_table, GRL_STATE_TABLES)
GRL_DEFINE_VISITOR(for_each_decoded_column, GRL_DECODED_COLUMNS)
GRL_DEFINE_VISITOR(for_each_decoded_sample_column, GRL_DECODED_SAMPLE_COLUMNS)
#undef GRL_DEFINE_VISITOR
#undef GRL_VISIT_COLUMN

#define GRL_COLUMN_SPEC(name, Stored, Exposed, dtype, shape) ColumnSpec{#name, dtype, shape},
constexpr ColumnSpec kRecordColumns[] = {GRL_RECORD_COLUMNS(GRL_COLUMN_SPEC)};
constexpr ColumnSpec kSampleColumns[] = {GRL_SAMPLE_COLUMNS(GRL_COLUMN_SPEC)};
constexpr ColumnSpec kStateIndexColumns[] = {GRL_STATE_INDEX_COLUMNS(GRL_COLUMN_SPEC)};
constexpr ColumnSpec kStateIndexSampleColumns[] = {GRL_STATE_INDEX_SAMPLE_COLUMNS(GRL_COLUMN_SPEC)};
constexpr ColumnSpec kStateTables[] = {GRL_STATE_TABLES(GRL_COLUMN_SPEC)};
constexpr ColumnSpec kDecodedColumns[] = {GRL_DECODED_COLUMNS(GRL_COLUMN_SPEC)};
constexpr ColumnSpec kDecodedSampleColumns[] = {GRL_DECODED_SAMPLE_COLUMNS(GRL_COLUMN_SPEC)};
#undef GRL_COLUMN_SPEC

// ---- observations ------------------------------------------------------------

// The channels of an observation tensor, in order; ObservationConfig::obstacles
// adds kObstaclesChannel after them.
constexpr std::array<const char*, 9> kObservationChannelNames = {
    "own_army", "enemy_army",  "own_land", "enemy_land", "neutral_land", "cities_and_generals",
    "mountains", "visible", "fog"};
constexpr int kObservationChannels = static_cast<int>(kObservationChannelNames.size());
constexpr const char* kObstaclesChannel = "obstacles";

}  // namespace grl
