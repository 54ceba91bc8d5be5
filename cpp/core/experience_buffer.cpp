// The experience ring: construction, room for producers, appending and
// loading records, statistics. State slots, cursors, priorities, sampling,
// decoding and persistence are in their own files.
#include "experience_buffer.hpp"

#include <algorithm>
#include <random>
#include <stdexcept>

#include <unistd.h>

#include "buffer_internal.hpp"
#include "priority_trees.hpp"
#include "thread_pool.hpp"

namespace grl {

using namespace buffer_internal;

uint64_t next_game_id() {
  static const uint64_t prefix = [] {
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device() ^
           static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }();
  static std::atomic<uint64_t> counter{0};
  return prefix + counter.fetch_add(1);
}

bool CursorFilter::matches(const ExperienceRecord& r) const {
  if (r.tick < min_tick) return false;
  if (!player_ids.empty() && std::find(player_ids.begin(), player_ids.end(), r.player) == player_ids.end()) {
    return false;
  }
  if (!game_ids.empty() && std::find(game_ids.begin(), game_ids.end(), r.game_id) == game_ids.end()) {
    return false;
  }
  return true;
}

// ---- construction ------------------------------------------------------------

ExperienceBuffer::ExperienceBuffer(int height, int width, uint64_t capacity, FullPolicy policy,
                                   uint64_t state_capacity, ObservationConfig observation)
    : height_(height),
      width_(width),
      tiles_(height * width),
      capacity_(capacity),
      state_capacity_(state_capacity ? state_capacity : capacity / 2 + 4096),
      policy_(policy),
      observation_(observation),
      // codes (1 byte a tile) and armies (2 bytes a tile), each padded to words, plus a flags word
      state_words_((tiles_ + 7) / 8 + (2 * tiles_ + 7) / 8 + 1) {
  if (height < 2 || height > kMaxEnvSide || width < 2 || width > kMaxEnvSide) {
    throw std::invalid_argument("height and width must be in 2.." + std::to_string(kMaxEnvSide) + ", got " +
                                std::to_string(height) + "x" + std::to_string(width));
  }
  if (capacity < 1) throw std::invalid_argument("capacity must be at least 1");
  if (capacity > (1ULL << 34)) throw std::invalid_argument("capacity is too large: " + std::to_string(capacity));
  if (state_capacity_ < 2) throw std::invalid_argument("state_capacity must be at least 2");
  if (state_capacity_ > (1ULL << 34)) {
    throw std::invalid_argument("state_capacity is too large: " + std::to_string(state_capacity_));
  }
  // Refused up front rather than failing to allocate (or being killed later):
  // sizes may come from a file's header.
  const uint64_t memory = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
  if (ring_bytes() > memory) {
    throw std::invalid_argument("capacity " + std::to_string(capacity_) + " and state_capacity " +
                                std::to_string(state_capacity_) + " need " + std::to_string(ring_bytes() >> 20) +
                                " MiB, more than this machine's " + std::to_string(memory >> 20) + " MiB of memory");
  }
  records_.reset(new RecordSlot[capacity_]);
  state_stamp_.reset(new std::atomic<uint64_t>[state_capacity_]);
  state_last_ref_.reset(new std::atomic<uint64_t>[state_capacity_]);
  state_first_use_.reset(new std::atomic<uint64_t>[state_capacity_]);
  for (uint64_t i = 0; i < state_capacity_; ++i) {
    state_stamp_[i].store(0, std::memory_order_relaxed);
    state_last_ref_[i].store(0, std::memory_order_relaxed);
    state_first_use_[i].store(0, std::memory_order_relaxed);
  }
  // Not zeroed: a slot is read only after it was written (its stamp says so),
  // so untouched slots cost no resident memory until the ring fills.
  state_words_store_.reset(new uint64_t[state_capacity_ * state_words_]);
}

ExperienceBuffer::~ExperienceBuffer() = default;

uint64_t ExperienceBuffer::ring_bytes() const {
  return capacity_ * sizeof(RecordSlot) +
         state_capacity_ * (state_words_ * sizeof(uint64_t) + 3 * sizeof(std::atomic<uint64_t>));
}

uint64_t ExperienceBuffer::oldest() const { return oldest_at(head_.load(std::memory_order_acquire)); }

uint64_t ExperienceBuffer::oldest_at(uint64_t head) const {
  return std::max(head > capacity_ ? head - capacity_ : 0, first_sequence_.load(std::memory_order_relaxed));
}

// ---- waiting -----------------------------------------------------------------

uint64_t ExperienceBuffer::min_open_cursor() {
  if (policy_ != FullPolicy::kBlock) return UINT64_MAX;
  std::lock_guard<std::mutex> lock(cursors_mutex_);
  uint64_t lowest = UINT64_MAX;
  size_t kept = 0;
  for (auto& weak : cursors_) {
    auto cursor = weak.lock();
    if (!cursor || cursor->closed()) continue;
    lowest = std::min(lowest, cursor->position());
    cursors_[kept++] = weak;
  }
  cursors_.resize(kept);
  min_cursor_cache_.store(lowest);
  return lowest;
}

// State `id` may take its slot when the slot holds the state one lap before
// (written, so that a lagging writer is never overtaken), no producer holds
// that one, and every experience referring to it is behind every open cursor.
bool ExperienceBuffer::state_slot_ready(uint64_t id, uint64_t min_cursor) const {
  const uint64_t slot = id % state_capacity_;
  const uint64_t previous = id >= state_capacity_ ? id - state_capacity_ + 1 : 0;
  if (state_stamp_[slot].load(std::memory_order_acquire) != previous) return false;
  const uint64_t last_ref = state_last_ref_[slot].load(std::memory_order_acquire);
  return !(last_ref & kPinned) && (last_ref == 0 || last_ref - 1 < min_cursor);
}

void ExperienceBuffer::notify_readers() {
  std::lock_guard<std::mutex> lock(wait_mutex_);
  readers_cv_.notify_all();
}

void ExperienceBuffer::notify_producers() {
  std::lock_guard<std::mutex> lock(wait_mutex_);
  producers_cv_.notify_all();
}

bool ExperienceBuffer::wait_for_room(uint64_t experiences, uint64_t states, double timeout_s) {
  if (policy_ != FullPolicy::kBlock) return true;
  if (experiences > capacity_) {
    throw std::invalid_argument("cannot append " + std::to_string(experiences) +
                                " experiences at once into a buffer of capacity " + std::to_string(capacity_));
  }
  const auto deadline = deadline_after(timeout_s);
  while (true) {
    const uint64_t min_cursor = min_open_cursor();
    const uint64_t head = head_.load();
    const uint64_t state_head = state_head_.load();
    bool room = min_cursor == UINT64_MAX || head + experiences <= min_cursor + capacity_;
    for (uint64_t id = state_head; room && id < state_head + states; ++id) {
      room = state_slot_ready(id, min_cursor);
    }
    if (room) return true;
    if (Clock::now() >= deadline) return false;
    producers_waiting_.fetch_add(1);
    {
      std::unique_lock<std::mutex> lock(wait_mutex_);
      producers_cv_.wait_until(lock, std::min(deadline, Clock::now() + kMaxWaitSlice));
    }
    producers_waiting_.fetch_sub(1);
  }
}

void ExperienceBuffer::wait_for_producers(int& spins) {
  if (++spins < 64) {
    std::this_thread::yield();
    return;
  }
  producers_waiting_.fetch_add(1);
  {
    std::unique_lock<std::mutex> lock(wait_mutex_);
    producers_cv_.wait_for(lock, spins < 256 ? std::chrono::milliseconds(1) : kMaxWaitSlice);
  }
  producers_waiting_.fetch_sub(1);
}

// Producers never wait here while holding a state or a reserved slot they
// have not written (see reserve_state), so a wait ends when the slot's holder
// finishes its append or the cursors read on: they never wait on each other

uint64_t ExperienceBuffer::append(const ExperienceRecord* records, size_t count) {
  if (count == 0) return head_.load();
  if (count > capacity_) {
    throw std::invalid_argument("cannot append " + std::to_string(count) +
                                " experiences at once into a buffer of capacity " + std::to_string(capacity_));
  }
  const uint64_t first = head_.fetch_add(count);
  if (policy_ == FullPolicy::kBlock) {
    // The cached minimum is never above the true one (opening a cursor lowers
    // it, reading only raises the true one), so a fit against it is a fit.
    while (true) {
      uint64_t min_cursor = min_cursor_cache_.load();
      if (min_cursor != UINT64_MAX && first + count > min_cursor + capacity_) min_cursor = min_open_cursor();
      if (min_cursor == UINT64_MAX || first + count <= min_cursor + capacity_) break;
      producers_waiting_.fetch_add(1);
      {
        std::unique_lock<std::mutex> lock(wait_mutex_);
        producers_cv_.wait_for(lock, kMaxWaitSlice);
      }
      producers_waiting_.fetch_sub(1);
    }
  }
  for (size_t k = 0; k < count; ++k) {
    const uint64_t seq = first + k;
    RecordSlot& slot = records_[seq % capacity_];
    // A slot already lapped (overwrite policy, or block without open cursors)
    // keeps the later record: this one is missed by whoever looks for it.
    if (!begin_write(slot.stamp, seq + 1)) continue;
    store_words(slot.words, reinterpret_cast<const uint64_t*>(&records[k]), kRecordWords);
    slot.stamp.store(seq + 1, std::memory_order_release);
    if (!(records[k].flags & kMissingFlag) && (k == 0 || records[k].state_id != records[k - 1].state_id)) {
      state_first_use_[records[k].state_id % state_capacity_].store(seq + 1, std::memory_order_release);
    }
    if (policy_ == FullPolicy::kBlock && !(records[k].flags & kMissingFlag)) {
      // The producer holds both states, so their slots still hold them.
      raise_last_ref(state_last_ref_[records[k].state_id % state_capacity_], seq + 1);
      raise_last_ref(state_last_ref_[records[k].next_state_id % state_capacity_], seq + 1);
    }
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (trees_built_.load(std::memory_order_seq_cst)) enter_priorities(records, first, count);
  if (readers_waiting_.load() > 0) notify_readers();
  return first;
}

// The records just published enter the trees at the maximum priority (those a

// ---- reading -----------------------------------------------------------------

int ExperienceBuffer::load_record(uint64_t seq, ExperienceRecord& out) const {
  const RecordSlot& slot = records_[seq % capacity_];
  const uint64_t before = slot.stamp.load(std::memory_order_acquire);
  if (before == seq + 1) {
    load_words(reinterpret_cast<uint64_t*>(&out), slot.words, kRecordWords);
    std::atomic_thread_fence(std::memory_order_acquire);
    return slot.stamp.load(std::memory_order_relaxed) == before ? 1 : -1;
  }
  const uint64_t held = before & ~kBusy;
  return held > seq + 1 ? -1 : 0;
}


BufferStats ExperienceBuffer::stats() const {
  BufferStats s{};
  const uint64_t head = head_.load(), state_head = state_head_.load();
  s.capacity = capacity_;
  s.state_capacity = state_capacity_;
  s.total_appended = head;
  s.total_overwritten = oldest_at(head);  // everything below the oldest resident (before or since a load)
  s.resident = head - s.total_overwritten;
  s.total_states = state_head;
  s.resident_states = std::min(state_head, state_capacity_);
  size_t wide_bytes = 0;
  {
    std::lock_guard<std::mutex> lock(wide_mutex_);
    for (const auto& entry : wide_armies_) wide_bytes += entry.second.size() * sizeof(int32_t) + 64;
  }
  s.bytes_used = ring_bytes() + wide_bytes;
  if (const PriorityTrees* trees = built_trees()) s.bytes_used += trees->bytes();
  auto* self = const_cast<ExperienceBuffer*>(this);
  std::lock_guard<std::mutex> lock(self->cursors_mutex_);
  for (const auto& weak : cursors_) {
    if (auto cursor = weak.lock(); cursor && !cursor->closed()) s.cursor_lag.push_back(cursor->lag());
  }
  return s;
}

}  // namespace grl
