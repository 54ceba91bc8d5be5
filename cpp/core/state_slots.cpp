// The buffer's state slots: each game state stored once, compact (tile codes
// and 16-bit armies, wider armies aside), written and read under a seqlock
// stamp and, under the block policy, held by producers until referenced.
#include <algorithm>
#include <mutex>

#include "buffer_internal.hpp"
#include "experience_buffer.hpp"
#include "vectorize.hpp"

namespace grl {

using namespace buffer_internal;

namespace {

// tile_code and 16-bit armies of a board; true when an army needs more than
// 16 bits. Simple loops over non-aliasing arrays, so that each vectorizes.
GRL_VECTOR_CLONES
bool pack_tiles(const uint8_t* __restrict kind, const int16_t* __restrict owner, const int32_t* __restrict army,
                int tiles, uint8_t* __restrict codes, uint16_t* __restrict army16) {
  for (int t = 0; t < tiles; ++t) codes[t] = tile_code(kind[t], owner[t]);
  for (int t = 0; t < tiles; ++t) army16[t] = static_cast<uint16_t>(army[t]);
  int32_t largest = 0;
  for (int t = 0; t < tiles; ++t) largest = std::max(largest, army[t]);
  return static_cast<uint32_t>(largest) > kMaxCompactArmy;
}

// The inverse of pack_tiles (but for wide armies), one simple loop per output
// so that each vectorizes (the outputs do not alias the slot copy).
GRL_VECTOR_CLONES
void unpack_tiles(const uint8_t* __restrict codes, const uint16_t* __restrict army16, int tiles,
                  uint8_t* __restrict kind, int16_t* __restrict owner, int32_t* __restrict army) {
  for (int t = 0; t < tiles; ++t) kind[t] = tile_kind(codes[t]);
  for (int t = 0; t < tiles; ++t) owner[t] = tile_owner(codes[t]);
  for (int t = 0; t < tiles; ++t) army[t] = army16[t];
}

}  // namespace

// ---- producers ---------------------------------------------------------------

bool ExperienceBuffer::write_state_slot(uint64_t id, const uint8_t* kind, const int16_t* owner,
                                        const int32_t* army) {
  thread_local std::vector<uint64_t> payload;
  payload.assign(state_words_, 0);
  const bool wide = pack_tiles(kind, owner, army, tiles_, reinterpret_cast<uint8_t*>(payload.data()),
                               reinterpret_cast<uint16_t*>(payload.data() + (tiles_ + 7) / 8));
  payload[state_words_ - 1] = wide;
  const uint64_t slot = id % state_capacity_;
  auto& stamp = state_stamp_[slot];
  uint64_t previous = 0;
  if (!begin_write(stamp, id + 1, &previous)) return false;
  if (wide || wide_count_.load(std::memory_order_acquire) > 0) {
    std::lock_guard<std::mutex> lock(wide_mutex_);
    if (previous != 0) wide_armies_.erase(previous - 1);
    if (wide) wide_armies_[id].assign(army, army + tiles_);
    wide_count_.store(wide_armies_.size(), std::memory_order_release);
  }
  store_words(state_words_store_.get() + slot * state_words_, payload.data(), state_words_);
  stamp.store(id + 1, std::memory_order_release);
  return true;
}

void ExperienceBuffer::claim_state_slot(uint64_t id) {
  auto& last_ref = state_last_ref_[id % state_capacity_];
  int spins = 0;
  while (true) {
    if (state_slot_ready(id, min_cursor_cache_.load()) || state_slot_ready(id, min_open_cursor())) {
      uint64_t value = last_ref.load(std::memory_order_acquire);
      // Taking the pin bit is what claims the slot: one producer wins it.
      if (!(value & kPinned) && last_ref.compare_exchange_strong(value, kPinned, std::memory_order_acq_rel)) return;
      continue;
    }
    wait_for_producers(spins);
  }
}

uint64_t ExperienceBuffer::reserve_state() {
  const uint64_t id = state_head_.fetch_add(1);
  if (policy_ == FullPolicy::kBlock) claim_state_slot(id);
  return id;
}

void ExperienceBuffer::write_state(uint64_t id, const uint8_t* kind, const int16_t* owner, const int32_t* army) {
  // Under the overwrite policy a later lap may have taken the slot already:
  // experiences referring to this state then count as missed.
  write_state_slot(id, kind, owner, army);
  if (producers_waiting_.load() > 0) notify_producers();
}

uint64_t ExperienceBuffer::append_state(const uint8_t* kind, const int16_t* owner, const int32_t* army) {
  const uint64_t id = reserve_state();
  write_state(id, kind, owner, army);
  return id;
}

bool ExperienceBuffer::hold_state(uint64_t id) {
  const uint64_t slot = id % state_capacity_;
  const auto& stamp = state_stamp_[slot];
  if (policy_ != FullPolicy::kBlock) return stamp.load(std::memory_order_acquire) == id + 1;
  // Pinned means claimed by the producer of a later lap (or held elsewhere).
  auto& last_ref = state_last_ref_[slot];
  uint64_t value = last_ref.load(std::memory_order_acquire);
  do {
    if ((value & kPinned) || stamp.load(std::memory_order_acquire) != id + 1) return false;
  } while (!last_ref.compare_exchange_weak(value, value | kPinned, std::memory_order_acq_rel,
                                           std::memory_order_acquire));
  if (stamp.load(std::memory_order_acquire) == id + 1) return true;
  release_state(id);  // the slot was taken and released meanwhile
  return false;
}

void ExperienceBuffer::release_state(uint64_t id) {
  if (policy_ != FullPolicy::kBlock) return;
  state_last_ref_[id % state_capacity_].fetch_and(~kPinned, std::memory_order_release);
  if (producers_waiting_.load() > 0) notify_producers();
}

bool ExperienceBuffer::load_state(uint64_t id, StateScratch& s, uint8_t* kind, int16_t* owner,
                                  int32_t* army) const {
  const uint64_t slot = id % state_capacity_;
  const auto& stamp = state_stamp_[slot];
  const uint64_t before = stamp.load(std::memory_order_acquire);
  if (before != id + 1) return false;
  s.words.resize(state_words_);
  load_words(s.words.data(), state_words_store_.get() + slot * state_words_, state_words_);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (stamp.load(std::memory_order_relaxed) != before) return false;
  unpack_tiles(reinterpret_cast<const uint8_t*>(s.words.data()),
               reinterpret_cast<const uint16_t*>(s.words.data() + (tiles_ + 7) / 8), tiles_, kind, owner, army);
  if (s.words[state_words_ - 1]) {
    std::lock_guard<std::mutex> lock(wide_mutex_);
    auto it = wide_armies_.find(id);
    if (it == wide_armies_.end()) return false;
    std::copy(it->second.begin(), it->second.end(), army);
  }
  return true;
}

void ExperienceBuffer::prefetch_state(uint64_t id) const {
  const uint64_t slot = id % state_capacity_;
  __builtin_prefetch(&state_stamp_[slot]);
  const char* words = reinterpret_cast<const char*>(state_words_store_.get() + slot * state_words_);
  for (size_t offset = 0; offset < state_words_ * sizeof(uint64_t); offset += 64) __builtin_prefetch(words + offset);
}

}  // namespace grl
