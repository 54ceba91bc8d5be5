// Whole-buffer export and import (saving and restoring contents) and
// appending raw batches from remote producers.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "batch_assembly.hpp"
#include "buffer_internal.hpp"
#include "experience_buffer.hpp"

namespace grl {

using namespace buffer_internal;

// ---- persistence and remote producers -----------------------------------------

void ExperienceBuffer::export_resident(RawBatch& out) {
  RawSink sink(out, height_, width_, std::min<uint64_t>(head_.load() - oldest(), capacity_));
  StateScratch scratch;
  auto load = [this, &scratch](uint64_t id, uint8_t* kind, int16_t* owner, int32_t* army) {
    return load_state(id, scratch, kind, owner, army);
  };
  ExperienceRecord record;
  const uint64_t head = head_.load();
  uint64_t missed = 0;
  for (uint64_t seq = oldest(); seq < head; ++seq) {
    if (load_record(seq, record) != 1 || (record.flags & kMissingFlag) || !sink.add(seq, record, load)) {
      missed += 1;
    }
  }
  out.missed = missed;
  out.next_sequence = head;
}

namespace {

// The stored record of row i, its states stored under `state_ids`.
ExperienceRecord record_of(const RawBatch& b, size_t i, const std::vector<uint64_t>& state_ids) {
  ExperienceRecord r{};
  r.game_id = b.game_id[i];
  r.state_id = state_ids[b.state_index[i]];
  r.next_state_id = state_ids[b.next_state_index[i]];
  r.tick = b.tick[i];
  r.action = b.action[i];
  r.reward = b.reward[i];
  r.player = static_cast<uint8_t>(b.player_id[i]);
  r.flags = (b.legal[i] ? kLegal : 0) | (b.terminated[i] ? kTerminated : 0) | (b.truncated[i] ? kTruncated : 0);
  return r;
}

}  // namespace

uint64_t ExperienceBuffer::append_raw(const RawBatch& b) {
  validate_raw_batch(b, height_, width_);
  const size_t tiles = static_cast<size_t>(tiles_);
  const size_t states = b.state_kind.size() / tiles;
  if (states > state_capacity_) {
    throw std::invalid_argument("batch holds " + std::to_string(states) +
                                " states, more than the buffer's state_capacity " + std::to_string(state_capacity_));
  }
  if (b.size() > capacity_) {
    throw std::invalid_argument("batch holds " + std::to_string(b.size()) +
                                " experiences, more than the buffer's capacity " + std::to_string(capacity_));
  }
  if (!wait_for_room(b.size(), states, 30.0)) {
    throw BufferFull("experience buffer is full: open cursors have not read for 30 s");
  }
  const std::vector<uint64_t> state_ids = append_states(b);
  std::vector<ExperienceRecord> records(b.size());
  for (size_t i = 0; i < b.size(); ++i) records[i] = record_of(b, i, state_ids);
  const uint64_t first = append(records.data(), records.size());
  for (const uint64_t id : state_ids) release_state(id);
  return first;
}

std::vector<uint64_t> ExperienceBuffer::append_states(const RawBatch& b) {
  const size_t tiles = static_cast<size_t>(tiles_);
  const size_t states = b.state_kind.size() / tiles;  // at most state_capacity
  // One reservation for the whole batch, every slot claimed before any is
  // written: waiting, the producer holds no state, only slots of consecutive
  // ids newer than any it waits on.
  const uint64_t first = state_head_.fetch_add(states);
  std::vector<uint64_t> ids(states);
  for (size_t s = 0; s < states; ++s) {
    ids[s] = first + s;
    if (policy_ == FullPolicy::kBlock) claim_state_slot(ids[s]);
  }
  for (size_t s = 0; s < states; ++s) {
    write_state(ids[s], b.state_kind.data() + s * tiles, b.state_owner.data() + s * tiles,
                b.state_army.data() + s * tiles);
  }
  return ids;
}

void ExperienceBuffer::import_resident(const RawBatch& b) {
  validate_raw_batch(b, height_, width_);
  if (head_.load() != 0 || state_head_.load() != 0) throw std::invalid_argument("can only load into an empty buffer");
  const size_t n = b.size();
  for (size_t i = 1; i < n; ++i) {
    if (b.sequence[i] <= b.sequence[i - 1]) throw std::invalid_argument("saved sequence numbers are not increasing");
  }
  if ((n && b.sequence[n - 1] >= kMaxSequence) || b.next_sequence > kMaxSequence) {
    throw std::invalid_argument("saved sequence numbers reach " +
                                std::to_string(std::max(n ? b.sequence[n - 1] : 0, b.next_sequence)) +
                                ", beyond the limit " + std::to_string(kMaxSequence));
  }
  const uint64_t first = n ? b.sequence[0] : b.next_sequence;
  const uint64_t end = std::max(n ? b.sequence[n - 1] + 1 : 0, b.next_sequence);
  if (end - first > capacity_) {
    throw std::invalid_argument("saved contents span " + std::to_string(end - first) +
                                " sequence numbers, more than the capacity " + std::to_string(capacity_));
  }
  if (b.state_kind.size() / tiles_ > state_capacity_) {
    throw std::invalid_argument("saved contents hold more states than state_capacity");
  }
  const std::vector<uint64_t> state_ids = append_states(b);
  // Sequence numbers continue where the saved buffer stopped; gaps become
  // markers that cursors report as missed, and nothing below the first is resident.
  first_sequence_.store(first);
  head_.store(first);
  size_t row = 0;
  std::vector<ExperienceRecord> pending;
  for (uint64_t seq = first; seq < end; ++seq) {
    if (row < n && b.sequence[row] == seq) {
      pending.push_back(record_of(b, row++, state_ids));
    } else {
      ExperienceRecord gap{};
      gap.flags = kMissingFlag;
      pending.push_back(gap);
    }
  }
  append(pending.data(), pending.size());
  for (const uint64_t id : state_ids) release_state(id);
}

}  // namespace grl
