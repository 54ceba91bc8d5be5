// Collecting records and their distinct states into a raw batch (cursors,
// sampling and export share it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "batch.hpp"
#include "experience_buffer.hpp"

namespace grl {

// Rows of the state tables by state id: open addressing on the id itself. A
// batch's ids are mostly consecutive, so they land in consecutive entries.
class StateRows {
 public:
  StateRows() : entries_(1024) {}
  // The row of `id`, or -1.
  int32_t find(uint64_t id) const {
    for (size_t i = id & mask();; i = (i + 1) & mask()) {
      if (entries_[i].key == id + 1) return entries_[i].row;
      if (entries_[i].key == 0) return -1;
    }
  }
  void insert(uint64_t id, int32_t row) {
    if (2 * (count_ + 1) > entries_.size()) grow();
    size_t i = id & mask();
    while (entries_[i].key != 0) i = (i + 1) & mask();
    entries_[i] = {id + 1, row};
    ++count_;
  }

 private:
  struct Entry {
    uint64_t key = 0;  // id + 1; 0 is empty
    int32_t row = 0;
  };
  size_t mask() const { return entries_.size() - 1; }
  void grow() {
    std::vector<Entry> old(entries_.size() * 2);
    old.swap(entries_);
    count_ = 0;
    for (const Entry& e : old) {
      if (e.key != 0) insert(e.key - 1, e.row);
    }
  }
  std::vector<Entry> entries_;
  size_t count_ = 0;
};

// Collects records and their distinct states into a RawBatch, whose columns'
// memory is reused.
class RawSink {
 public:
  // Without `with_states` only the records are collected (state indices -1).
  RawSink(RawBatch& out, int height, int width, size_t expected_rows, bool with_states = true)
      : out_(out), tiles_(static_cast<size_t>(height) * width), with_states_(with_states) {
    clear_rows(out_, height, width);
    const auto reserve = [expected_rows](auto, auto& column) { column.reserve(expected_rows); };
    for_each_record_column(out_, reserve);
    for_each_state_index_column(out_, reserve);
    const size_t cells = with_states ? std::min<size_t>(expected_rows, 1 << 16) * tiles_ : 0;  // about one board a row
    for_each_state_table(out_, [cells](auto, auto& column) { column.reserve(cells); });
  }
  size_t size() const { return out_.size(); }

  // False when a state of the record is no longer resident (nothing is added).
  // load_state(id, kind, owner, army) writes a state's tiles; false when gone.
  template <typename LoadState>
  bool add(uint64_t seq, const ExperienceRecord& r, LoadState&& load_state) {
    int32_t s = -1, ns = -1;
    if (with_states_) {
      if ((s = state_row(r.state_id, load_state)) < 0) return false;
      if ((ns = state_row(r.next_state_id, load_state)) < 0) return false;
    }
    out_.sequence.push_back(seq);
    out_.game_id.push_back(r.game_id);
    out_.player_id.push_back(r.player);
    out_.tick.push_back(r.tick);
    out_.action.push_back(r.action);
    out_.reward.push_back(r.reward);
    out_.legal.push_back((r.flags & kLegal) != 0);
    out_.terminated.push_back((r.flags & kTerminated) != 0);
    out_.truncated.push_back((r.flags & kTruncated) != 0);
    out_.state_index.push_back(s);
    out_.next_state_index.push_back(ns);
    return true;
  }
  RawBatch& batch() { return out_; }

  // The row of state `id` in the state tables (loaded on first use); -1 when gone.
  template <typename LoadState>
  int32_t state_row(uint64_t id, LoadState&& load_state) {
    const int32_t found = rows_.find(id);
    if (found >= 0) return found;
    const size_t at = out_.state_kind.size();
    const auto resize = [](size_t size) { return [size](auto, auto& column) { column.resize(size); }; };
    for_each_state_table(out_, resize(at + tiles_));  // unpacked in place
    if (!load_state(id, out_.state_kind.data() + at, out_.state_owner.data() + at, out_.state_army.data() + at)) {
      for_each_state_table(out_, resize(at));
      return -1;
    }
    const int32_t row = static_cast<int32_t>(at / tiles_);
    rows_.insert(id, row);
    return row;
  }

 private:
  RawBatch& out_;
  const size_t tiles_;
  const bool with_states_;
  StateRows rows_;
};

}  // namespace grl
