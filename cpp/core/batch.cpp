#include "batch.hpp"

#include <stdexcept>
#include <string>

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

void validate_raw_batch(const RawBatch& b, int height, int width) {
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
  const auto outside = [states](int32_t index) { return index < 0 || index >= states; };
  for (size_t i = 0; i < n; ++i) {
    if (outside(b.state_index[i]) || outside(b.next_state_index[i]) ||
        (!b.nstep_next_state_index.empty() && outside(b.nstep_next_state_index[i]))) {
      throw std::invalid_argument("row " + std::to_string(i) + ": state index out of range (row " +
                                  std::to_string(i) + " refers to a missing state)");
    }
    if (b.player_id[i] < 0 || b.player_id[i] >= kMaxPlayers) {
      throw std::invalid_argument("row " + std::to_string(i) + ": player_id " + std::to_string(b.player_id[i]) +
                                  " outside 0.." + std::to_string(kMaxPlayers - 1));
    }
  }
  for (size_t t = 0; t < b.state_kind.size(); ++t) {
    const char* bad = b.state_kind[t] > kGeneral                                      ? "kind"
                      : b.state_owner[t] < kNeutral || b.state_owner[t] >= kMaxPlayers ? "owner"
                      : b.state_army[t] < 0                                            ? "army"
                                                                                       : nullptr;
    if (bad) {
      const int64_t value = bad[0] == 'k' ? b.state_kind[t] : bad[0] == 'o' ? b.state_owner[t] : b.state_army[t];
      throw std::invalid_argument("state " + std::to_string(t / tiles) + " tile " + std::to_string(t % tiles) +
                                  ": invalid " + bad + " " + std::to_string(value));
    }
  }
}

}  // namespace grl
