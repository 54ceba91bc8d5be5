// Collecting records and their distinct states into a raw batch (cursors,
// sampling and export share it), or their distinct views into a view batch.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "batch.hpp"
#include "compact_observation.hpp"
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

// Collects records into a ViewBatch: each distinct (state, player) of the rows
// becomes one compact view, made when first needed while its state is
// unpacked (the two states last unpacked are kept: the players of a tick are
// adjacent rows and share a state and a next state), in the order first needed.
// Armies go to `byte_armies` until a state has one that does not fit a byte;
// then the views so far are widened into out.armies and the rest follow there.
class ViewSink {
 public:
  ViewSink(ViewBatch& batch, int height, int width, size_t expected_rows, bool obstacles, CompactRowsOut out,
           uint8_t* byte_armies)
      : batch_(batch),
        rows_(batch.rows, height, width, expected_rows, false),
        height_(height),
        width_(width),
        tiles_(static_cast<size_t>(height) * width),
        obstacles_(obstacles),
        out_(out),
        byte_armies_(byte_armies),
        scratch_(tiles_ * kObservationScratchPerTile) {
    batch_.state_view.clear();
    batch_.next_state_view.clear();
    batch_.views = 0;
    batch_.army_width = ArmyWidth::kByte;
    for (Unpacked& s : unpacked_) {
      s.kind.resize(tiles_);
      s.owner.resize(tiles_);
      s.army.resize(tiles_);
    }
  }
  size_t size() const { return rows_.size(); }

  // False when a state of the record is no longer resident (no row is added).
  template <typename LoadState>
  bool add(uint64_t seq, const ExperienceRecord& r, LoadState&& load_state) {
    const int32_t state = view(r.state_id, r.player, load_state);
    if (state < 0) return false;
    const int32_t next = view(r.next_state_id, r.player, load_state);
    if (next < 0) return false;
    rows_.add(seq, r, load_state);
    batch_.state_view.push_back(state);
    batch_.next_state_view.push_back(next);
    return true;
  }

 private:
  struct Unpacked {
    uint64_t id = UINT64_MAX;
    std::vector<uint8_t> kind;
    std::vector<int16_t> owner;
    std::vector<int32_t> army;
  };

  // The view of state `id` as `player` sees it (made now if new); -1 when the state is gone.
  template <typename LoadState>
  int32_t view(uint64_t id, int32_t player, LoadState& load_state) {
    const uint64_t key = id * kMaxPlayers + static_cast<uint64_t>(player);
    const int32_t found = views_.find(key);
    if (found >= 0) return found;
    const Unpacked* s = unpacked(id, load_state);
    if (s == nullptr) return -1;
    const auto v = static_cast<int32_t>(batch_.views++);
    const StateView state{height_, width_, s->kind.data(), s->owner.data(), s->army.data()};
    const size_t at = static_cast<size_t>(v) * tiles_;
    uint8_t* codes = out_.codes + at;
    switch (batch_.army_width) {
      case ArmyWidth::kByte:
        encode_compact(state, player, obstacles_, codes, byte_armies_ + at, scratch_.data());
        break;
      case ArmyWidth::kNarrow:
        encode_compact(state, player, obstacles_, codes, static_cast<uint16_t*>(out_.armies) + at, scratch_.data());
        break;
      case ArmyWidth::kWide:
        encode_compact(state, player, obstacles_, codes, static_cast<int32_t*>(out_.armies) + at, scratch_.data());
        break;
    }
    views_.insert(key, v);
    return v;
  }

  template <typename LoadState>
  const Unpacked* unpacked(uint64_t id, LoadState& load_state) {
    for (const Unpacked& s : unpacked_) {
      if (s.id == id) return &s;
    }
    Unpacked& s = unpacked_[older_];
    older_ ^= 1;
    s.id = UINT64_MAX;
    if (!load_state(id, s.kind.data(), s.owner.data(), s.army.data())) return nullptr;
    s.id = id;
    if (batch_.army_width == ArmyWidth::kByte && max_army(s.army.data(), tiles_) > kByteArmyMax) widen();
    return &s;
  }

  // The views so far into out.armies, where the rest follow.
  void widen() {
    const size_t count = batch_.views * tiles_;
    if (out_.width == ArmyWidth::kNarrow) {
      widen_armies(byte_armies_, count, static_cast<uint16_t*>(out_.armies));
    } else {
      widen_armies(byte_armies_, count, static_cast<int32_t*>(out_.armies));
    }
    batch_.army_width = out_.width;
  }

  ViewBatch& batch_;
  RawSink rows_;
  const int height_, width_;
  const size_t tiles_;
  const bool obstacles_;
  const CompactRowsOut out_;
  uint8_t* const byte_armies_;
  std::vector<uint8_t> scratch_;
  StateRows views_;  // view by state id * kMaxPlayers + player
  Unpacked unpacked_[2];
  int older_ = 0;
};

}  // namespace grl
