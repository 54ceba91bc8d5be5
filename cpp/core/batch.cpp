#include "batch.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "vectorize.hpp"

namespace grl {

void clear_rows(RawBatch& b, int height, int width) {
  b.height = height;
  b.width = width;
  const auto clear = [](auto, auto& column) { column.clear(); };
  for_each_record_column(b, clear);
  for_each_sample_column(b, clear);
  for_each_state_index_column(b, clear);
  for_each_state_index_sample_column(b, clear);
  for_each_state_table(b, clear);
  b.missed = 0;
  b.next_sequence = 0;
}

namespace {

// What is wrong with tile `t` (flat over the state tables) of `b`.
std::string tile_problem(const RawBatchView& b, size_t t) {
  const std::string where = "state " + std::to_string(t / b.tiles()) + " tile " + std::to_string(t % b.tiles()) + ": ";
  if (b.state_kind[t] > kGeneral) {
    return where + "invalid kind " + std::to_string(b.state_kind[t]) + " (a tile kind above " +
           std::to_string(kGeneral) + ")";
  }
  if (b.state_owner[t] < kNeutral || b.state_owner[t] >= kMaxPlayers) {
    return where + "invalid owner " + std::to_string(b.state_owner[t]) +
           (b.state_owner[t] < kNeutral ? " (an owner below -1, neutral)"
                                        : " (an owner above " + std::to_string(kMaxPlayers - 1) + ")");
  }
  return where + "invalid army " + std::to_string(b.state_army[t]) + " (a negative army)";
}

// Whether any of the tiles [begin, end) is out of range: a reduction a table
// without an early exit, so that each vectorizes (the tables are checked on
// every write).
GRL_VECTOR_CLONES
bool any_bad_tile(const uint8_t* kind, const int16_t* owner, const int32_t* army, size_t begin, size_t end) {
  uint8_t highest_kind = 0;
  for (size_t t = begin; t < end; ++t) highest_kind = std::max(highest_kind, kind[t]);
  uint16_t highest_owner = 0;  // owner + 1: neutral is 0, anything below it wraps high
  for (size_t t = begin; t < end; ++t) {
    highest_owner = std::max(highest_owner, static_cast<uint16_t>(owner[t] - kNeutral));
  }
  int32_t army_bits = 0;  // negative when any army is
  for (size_t t = begin; t < end; ++t) army_bits |= army[t];
  return highest_kind > kGeneral || highest_owner >= kMaxPlayers - kNeutral || army_bits < 0;
}

}  // namespace

RawBatchView view_of(const RawBatch& b) {
  RawBatchView view;
  view.height = b.height;
  view.width = b.width;
  view.next_sequence = b.next_sequence;
#define GRL_VIEW_COLUMN(name, Stored, Exposed, dtype, shape) view.name = b.name;
  GRL_RECORD_COLUMNS(GRL_VIEW_COLUMN)
  GRL_STATE_INDEX_COLUMNS(GRL_VIEW_COLUMN)
  GRL_STATE_INDEX_SAMPLE_COLUMNS(GRL_VIEW_COLUMN)
  GRL_STATE_TABLES(GRL_VIEW_COLUMN)
#undef GRL_VIEW_COLUMN
  return view;
}

void validate_raw_batch(const RawBatchView& b, int height, int width, bool check_values) {
  if (b.height != height || b.width != width) {
    throw std::invalid_argument("batch board is " + std::to_string(b.height) + "x" + std::to_string(b.width) +
                                ", the buffer's is " + std::to_string(height) + "x" + std::to_string(width));
  }
  const size_t n = b.size(), tiles = b.tiles();
  const auto same_length = [n](auto info, const auto& column) {
    if (column.size() != n) {
      throw std::invalid_argument(std::string("batch columns differ in length: ") + info.name + " has " +
                                  std::to_string(column.size()) + " rows, sequence " + std::to_string(n));
    }
  };
  for_each_record_column(b, same_length);
  for_each_state_index_column(b, same_length);
  if (!b.nstep_next_state_index.empty()) for_each_state_index_sample_column(b, same_length);
  if (tiles == 0 || b.state_kind.size() % tiles || b.state_owner.size() != b.state_kind.size() ||
      b.state_army.size() != b.state_kind.size()) {
    throw std::invalid_argument("batch state tables do not hold whole " + std::to_string(height) + "x" +
                                std::to_string(width) + " boards");
  }
  const int64_t states = static_cast<int64_t>(b.states());
  const auto check_index = [states](size_t row, const char* name, int32_t index) {
    if (index < 0 || index >= states) {
      throw std::invalid_argument("row " + std::to_string(row) + ": " + name + " refers to a state outside 0.." +
                                  std::to_string(states - 1) + ": " + std::to_string(index));
    }
  };
  for (size_t i = 0; i < n; ++i) {
    check_index(i, "state_index", b.state_index[i]);
    check_index(i, "next_state_index", b.next_state_index[i]);
    if (!b.nstep_next_state_index.empty()) check_index(i, "nstep_next_state_index", b.nstep_next_state_index[i]);
    if (check_values && (b.player_id[i] < 0 || b.player_id[i] >= kMaxPlayers)) {
      throw std::invalid_argument("row " + std::to_string(i) + ": player_id " + std::to_string(b.player_id[i]) +
                                  " outside 0.." + std::to_string(kMaxPlayers - 1));
    }
  }
  if (!check_values) return;
  const size_t total = b.state_kind.size();
  const auto* kind = b.state_kind.data();
  const auto* owner = b.state_owner.data();
  const auto* army = b.state_army.data();
  constexpr size_t kStride = 4096;  // tiles checked between early exits
  for (size_t begin = 0; begin < total; begin += kStride) {
    const size_t end = std::min(total, begin + kStride);
    if (!any_bad_tile(kind, owner, army, begin, end)) continue;
    for (size_t t = begin; t < end; ++t) {
      if (any_bad_tile(kind, owner, army, t, t + 1)) throw std::invalid_argument(tile_problem(b, t));
    }
  }
}

}  // namespace grl
