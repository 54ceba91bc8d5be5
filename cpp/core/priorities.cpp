// The buffer's priorities: building the trees on first use, updates, reads,
// restoring saved ones, and producers entering new records.
#include <algorithm>
#include <mutex>

#include "buffer_internal.hpp"
#include "experience_buffer.hpp"
#include "priority_trees.hpp"

namespace grl {

using namespace buffer_internal;

PriorityTrees* ExperienceBuffer::built_trees() const {
  return trees_built_.load(std::memory_order_acquire) ? trees_.get() : nullptr;
}

PriorityTrees& ExperienceBuffer::priority_trees(double alpha) {
  if (PriorityTrees* trees = built_trees()) return *trees;
  std::lock_guard<std::mutex> build(trees_build_mutex_);
  if (PriorityTrees* trees = built_trees()) return *trees;
  trees_ = std::make_unique<PriorityTrees>(capacity_, alpha);
  std::lock_guard<std::mutex> lock(trees_->mutex);
  // Announced before the resident slots are scanned: a producer that wrote a
  // slot after the scan passed it sees the trees (both sides order their
  // store before their load with seq_cst) and enters its records itself.
  trees_built_.store(true, std::memory_order_seq_cst);
  const uint64_t head = head_.load(std::memory_order_seq_cst), low = oldest_at(head);
  ExperienceRecord record;
  for (uint64_t seq = low; seq < head; ++seq) {
    if (load_record(seq, record) == 1 && !(record.flags & kMissingFlag)) {
      trees_->set_leaf(seq % capacity_, trees_->max_priority());
    }
  }
  trees_->update_range(0, capacity_ - 1);
  return *trees_;
}

uint64_t ExperienceBuffer::update_priorities(const uint64_t* sequences, const float* priorities, size_t count) {
  PriorityTrees& trees = priority_trees(0.6);
  uint64_t ignored = 0;
  constexpr size_t kChunk = 64;  // bounds how long producers may wait for the lock
  for (size_t begin = 0; begin < count; begin += kChunk) {
    const size_t end = std::min(count, begin + kChunk);
    uint64_t slots[kChunk];
    size_t changed = 0;
    std::lock_guard<std::mutex> lock(trees.mutex);
    const auto start = Clock::now();
    const uint64_t head = head_.load(), low = oldest_at(head);
    for (size_t i = begin; i < end; ++i) {
      const uint64_t seq = sequences[i];
      const uint64_t slot = seq % capacity_;
      // Resident and published (a slot being rewritten belongs to a later record).
      if (seq < low || seq >= head || records_[slot].stamp.load(std::memory_order_acquire) != seq + 1 ||
          trees.priority(slot) < 0) {
        ++ignored;
        continue;
      }
      trees.raise_max(priorities[i]);
      trees.set_leaf(slot, priorities[i]);
      slots[changed++] = slot;
    }
    trees.update_leaves(slots, changed);
    raise_to(trees.updater_ns_max, nanoseconds_since(start));
  }
  trees.updates.fetch_add(count - ignored, std::memory_order_relaxed);
  trees.updates_ignored.fetch_add(ignored, std::memory_order_relaxed);
  return ignored;
}

void ExperienceBuffer::priorities(const uint64_t* sequences, size_t count, float* out) const {
  PriorityTrees* trees = built_trees();
  if (!trees) {
    std::fill(out, out + count, -1.0f);
    return;
  }
  std::lock_guard<std::mutex> lock(trees->mutex);
  const uint64_t head = head_.load(), low = oldest_at(head);
  for (size_t i = 0; i < count; ++i) {
    const uint64_t seq = sequences[i], slot = seq % capacity_;
    const bool resident = seq >= low && seq < head && records_[slot].stamp.load(std::memory_order_acquire) == seq + 1;
    out[i] = resident ? trees->priority(slot) : -1.0f;
  }
}

void ExperienceBuffer::restore_priorities(const uint64_t* sequences, const float* priorities, size_t count,
                                          float max_priority) {
  update_priorities(sequences, priorities, count);
  PriorityTrees& trees = *built_trees();
  std::lock_guard<std::mutex> lock(trees.mutex);
  trees.raise_max(max_priority);
}

PriorityStats ExperienceBuffer::priority_stats() const {
  PriorityStats s;
  PriorityTrees* trees = built_trees();
  if (!trees) return s;
  s.enabled = true;
  s.alpha = trees->alpha();
  s.total = trees->total();
  s.bytes = trees->bytes();
  s.updates = trees->updates.load();
  s.updates_ignored = trees->updates_ignored.load();
  s.producer_sections = trees->producer_sections.load();
  s.producer_ns_total = trees->producer_ns_total.load();
  s.producer_ns_max = trees->producer_ns_max.load();
  s.updater_ns_max = trees->updater_ns_max.load();
  std::lock_guard<std::mutex> lock(trees->mutex);
  s.max_priority = trees->max_priority();
  return s;
}

// later lap already replaced are left to the producer of that lap).
void ExperienceBuffer::enter_priorities(const ExperienceRecord* records, uint64_t first, size_t count) {
  PriorityTrees& trees = *trees_;
  const auto start = Clock::now();
  {
    std::lock_guard<std::mutex> lock(trees.mutex);
    const float p = trees.max_priority();
    for (size_t k = 0; k < count; ++k) {
      const uint64_t seq = first + k, slot = seq % capacity_;
      if (records_[slot].stamp.load(std::memory_order_acquire) != seq + 1) continue;
      trees.set_leaf(slot, records[k].flags & kMissingFlag ? -1.0f : p);
    }
    const uint64_t lo = first % capacity_, hi = (first + count - 1) % capacity_;
    if (lo <= hi) {
      trees.update_range(lo, hi);
    } else {
      trees.update_range(lo, capacity_ - 1);
      trees.update_range(0, hi);
    }
  }
  const uint64_t ns = nanoseconds_since(start);
  trees.producer_sections.fetch_add(1, std::memory_order_relaxed);
  trees.producer_ns_total.fetch_add(ns, std::memory_order_relaxed);
  raise_to(trees.producer_ns_max, ns);
}

}  // namespace grl
