// Internals shared by the experience buffer's files (not part of its
// interface): stamp bits, seqlock slot writes, waiting helpers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "experience_buffer.hpp"

namespace grl::buffer_internal {

constexpr uint64_t kBusy = 1ULL << 63;    // stamp bit: slot being written
constexpr uint64_t kPinned = 1ULL << 63;  // state_last_ref_ bit: held by a producer (block policy)
constexpr uint8_t kMissingFlag = 0x80;  // record flag: a gap restored from a saved file
constexpr int kRecordWords = sizeof(ExperienceRecord) / 8;
constexpr auto kMaxWaitSlice = std::chrono::milliseconds(20);

using Clock = std::chrono::steady_clock;

inline Clock::time_point deadline_after(double seconds) {
  if (seconds <= 0) return Clock::now();
  if (seconds > 1e6) seconds = 1e6;
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// Relaxed word copies: the seqlock stamps around them decide whether the copy is valid.
inline void store_words(uint64_t* dst, const uint64_t* src, size_t n) {
  for (size_t i = 0; i < n; ++i) std::atomic_ref<uint64_t>(dst[i]).store(src[i], std::memory_order_relaxed);
}
inline void load_words(uint64_t* dst, const uint64_t* src, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    dst[i] = std::atomic_ref<uint64_t>(const_cast<uint64_t&>(src[i])).load(std::memory_order_relaxed);
  }
}

// Raises the reference count part of a state's last_ref word, keeping its pin bit.
inline void raise_last_ref(std::atomic<uint64_t>& target, uint64_t value) {
  uint64_t current = target.load(std::memory_order_relaxed);
  while ((current & ~kPinned) < value &&
         !target.compare_exchange_weak(current, (current & kPinned) | value, std::memory_order_release,
                                       std::memory_order_relaxed)) {
  }
}

// Takes a seqlock slot for generation `stamp_value` (seq or id + 1): waits while
// another writer is copying into it; false when a later generation already
// holds it (this one was overwritten before it was written). `replaced` is the
// stamp of the generation taken over.
inline bool begin_write(std::atomic<uint64_t>& stamp, uint64_t stamp_value, uint64_t* replaced = nullptr) {
  uint64_t current = stamp.load(std::memory_order_relaxed);
  while (true) {
    if (current & kBusy) {
      std::this_thread::yield();
      current = stamp.load(std::memory_order_relaxed);
      continue;
    }
    if (current > stamp_value) return false;
    if (stamp.compare_exchange_weak(current, kBusy | stamp_value, std::memory_order_acquire,
                                    std::memory_order_relaxed)) {
      break;
    }
  }
  // Orders the busy stamp before the payload stores (readers re-check the stamp).
  std::atomic_thread_fence(std::memory_order_release);
  if (replaced) *replaced = current;
  return true;
}


inline void raise_to(std::atomic<uint64_t>& target, uint64_t value) {
  uint64_t current = target.load(std::memory_order_relaxed);
  while (current < value && !target.compare_exchange_weak(current, value, std::memory_order_relaxed)) {
  }
}

inline uint64_t nanoseconds_since(Clock::time_point start) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
}


}  // namespace grl::buffer_internal

namespace grl {

struct ExperienceBuffer::RecordSlot {
  std::atomic<uint64_t> stamp{0};  // seq + 1 when published; kBusy | (seq + 1) while written
  uint64_t words[buffer_internal::kRecordWords];
};


}  // namespace grl
