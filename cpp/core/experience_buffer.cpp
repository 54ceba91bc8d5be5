#include "experience_buffer.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <thread>

#include <unistd.h>

#include "rng.hpp"
#include "thread_pool.hpp"
#include "vectorize.hpp"

namespace grl {

namespace {

constexpr uint64_t kBusy = 1ULL << 63;    // stamp bit: slot being written
constexpr uint64_t kPinned = 1ULL << 63;  // state_last_ref_ bit: held by a producer (block policy)
constexpr uint8_t kMissingFlag = 0x80;  // record flag: a gap restored from a saved file
constexpr int kRecordWords = sizeof(ExperienceRecord) / 8;
constexpr auto kMaxWaitSlice = std::chrono::milliseconds(20);

using Clock = std::chrono::steady_clock;

Clock::time_point deadline_after(double seconds) {
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

// tile_code and 16-bit armies of a board; true when an army needs more than
// 16 bits. Simple loops over non-aliasing arrays, so that each vectorizes.
GRL_VECTOR_CLONES
bool pack_tiles(const uint8_t* __restrict kind, const int16_t* __restrict owner, const int32_t* __restrict army,
                int tiles, uint8_t* __restrict codes, uint16_t* __restrict army16) {
  for (int t = 0; t < tiles; ++t) codes[t] = static_cast<uint8_t>(kind[t] << 5 | (owner[t] + 1));
  for (int t = 0; t < tiles; ++t) army16[t] = static_cast<uint16_t>(army[t]);
  int32_t largest = 0;
  for (int t = 0; t < tiles; ++t) largest = std::max(largest, army[t]);
  return largest > 0xFFFF;
}

// The inverse of pack_tiles (but for wide armies), one simple loop per output
// so that each vectorizes (the outputs do not alias the slot copy).
GRL_VECTOR_CLONES
void unpack_tiles(const uint8_t* __restrict codes, const uint16_t* __restrict army16, int tiles,
                  uint8_t* __restrict kind, int16_t* __restrict owner, int32_t* __restrict army) {
  for (int t = 0; t < tiles; ++t) kind[t] = codes[t] >> 5;
  for (int t = 0; t < tiles; ++t) owner[t] = static_cast<int16_t>((codes[t] & 31) - 1);
  for (int t = 0; t < tiles; ++t) army[t] = army16[t];
}

// Raises the reference count part of a state's last_ref word, keeping its pin bit.
void raise_last_ref(std::atomic<uint64_t>& target, uint64_t value) {
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
bool begin_write(std::atomic<uint64_t>& stamp, uint64_t stamp_value, uint64_t* replaced = nullptr) {
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

}  // namespace

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

struct ExperienceBuffer::RecordSlot {
  std::atomic<uint64_t> stamp{0};  // seq + 1 when published; kBusy | (seq + 1) while written
  uint64_t words[kRecordWords];
};

// A state's slot words, copied out under its stamp.
struct ExperienceBuffer::StateScratch {
  std::vector<uint64_t> words;
};

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

// ---- priority trees ------------------------------------------------------------

// A sum-tree (double) and a min-tree (float) of priority^alpha over the ring's
// slots, as implicit binary heaps (node 1 the root, leaf i at node P + i).
// Writers (producers, priority updates, alpha changes) hold `mutex`; samplers
// descend without it, reading nodes with relaxed atomics: a descent that meets
// a half-updated path lands on some leaf, which the sampler checks (positive,
// its slot resident) and otherwise draws again.
class ExperienceBuffer::PriorityTrees {
 public:
  PriorityTrees(uint64_t slots, double alpha)
      : slots_(slots), leaves_(std::bit_ceil(std::max<uint64_t>(slots, 2))), alpha_(alpha),
        sum_(new std::atomic<double>[2 * leaves_]), min_(new std::atomic<float>[2 * leaves_]),
        priority_(new float[slots]) {
    for (uint64_t i = 0; i < 2 * leaves_; ++i) {
      sum_[i].store(0, std::memory_order_relaxed);
      min_[i].store(kInf, std::memory_order_relaxed);
    }
    std::fill(priority_.get(), priority_.get() + slots, -1.0f);
  }

  static constexpr float kInf = std::numeric_limits<float>::infinity();
  std::mutex mutex;

  uint64_t bytes() const { return 2 * leaves_ * (sizeof(double) + sizeof(float)) + slots_ * sizeof(float); }
  double alpha() const { return alpha_.load(std::memory_order_relaxed); }
  double total() const { return sum_[1].load(std::memory_order_relaxed); }
  float min_leaf() const { return min_[1].load(std::memory_order_relaxed); }
  double leaf(uint64_t slot) const { return sum_[leaves_ + slot].load(std::memory_order_relaxed); }

  // The slot holding mass `u` of [0, total): a descent from the root.
  uint64_t find(double u) const {
    uint64_t node = 1;
    while (node < leaves_) {
      const double left = sum_[2 * node].load(std::memory_order_relaxed);
      if (u < left) {
        node = 2 * node;
      } else {
        u -= left;
        node = 2 * node + 1;
      }
    }
    return node - leaves_;
  }

  // find for many masses at once, level by level: the loads of one level are
  // independent, so their cache misses overlap (prefetched a level ahead).
  void find_many(const double* masses, size_t n, uint64_t* slots) const {
    thread_local std::vector<double> u;
    u.assign(masses, masses + n);
    std::fill(slots, slots + n, 1);
    for (uint64_t width = 1; width < leaves_; width *= 2) {
      for (size_t k = 0; k < n; ++k) {
        const uint64_t node = slots[k];
        const double left = sum_[2 * node].load(std::memory_order_relaxed);
        if (u[k] < left) {
          slots[k] = 2 * node;
        } else {
          u[k] -= left;
          slots[k] = 2 * node + 1;
        }
        if (2 * width < leaves_) __builtin_prefetch(&sum_[2 * slots[k]]);
      }
    }
    for (size_t k = 0; k < n; ++k) slots[k] -= leaves_;
  }

  // ---- under `mutex` ----
  float max_priority() const { return max_priority_; }
  float priority(uint64_t slot) const { return priority_[slot]; }
  // Sets a slot's priority (< 0: not resident) without updating its ancestors.
  void set_leaf(uint64_t slot, float p) {
    priority_[slot] = p;
    double value = p > 0 ? (p == max_priority_ ? max_powered_ : std::pow(static_cast<double>(p), alpha())) : 0.0;
    sum_[leaves_ + slot].store(value, std::memory_order_relaxed);
    min_[leaves_ + slot].store(value > 0 ? static_cast<float>(value) : kInf, std::memory_order_relaxed);
  }
  void raise_max(float p) {
    if (p > max_priority_) {
      max_priority_ = p;
      max_powered_ = std::pow(static_cast<double>(p), alpha());
    }
  }
  // Recomputes the ancestors of leaves first..last (inclusive): level by
  // level, so a run of k leaves costs k + log(P) nodes.
  void update_range(uint64_t first, uint64_t last) {
    uint64_t lo = (leaves_ + first) / 2, hi = (leaves_ + last) / 2;
    while (lo >= 1) {
      for (uint64_t node = lo; node <= hi; ++node) pull(node);
      if (lo == 1) break;
      lo /= 2;
      hi /= 2;
    }
  }
  // update_leaf for many leaves, level by level (prefetching each level's nodes
  // first, so that their cache misses overlap).
  void update_leaves(const uint64_t* slots, size_t n) {
    thread_local std::vector<uint64_t> nodes;
    nodes.resize(n);
    for (size_t k = 0; k < n; ++k) nodes[k] = leaves_ + slots[k];
    for (uint64_t width = leaves_; width > 1; width /= 2) {
      for (size_t k = 0; k < n; ++k) {
        nodes[k] /= 2;
        __builtin_prefetch(&sum_[2 * nodes[k]]);
        __builtin_prefetch(&min_[2 * nodes[k]]);
      }
      for (size_t k = 0; k < n; ++k) pull(nodes[k]);
    }
  }
  // A new exponent: every leaf recomputed from the stored priorities.
  void set_alpha(double alpha) {
    alpha_.store(alpha, std::memory_order_relaxed);
    max_powered_ = std::pow(static_cast<double>(max_priority_), alpha);
    for (uint64_t slot = 0; slot < slots_; ++slot) set_leaf(slot, priority_[slot]);
    update_range(0, slots_ - 1);
  }

  std::atomic<uint64_t> updates{0}, updates_ignored{0};
  std::atomic<uint64_t> producer_sections{0}, producer_ns_total{0}, producer_ns_max{0}, updater_ns_max{0};

 private:
  void pull(uint64_t node) {
    const uint64_t l = 2 * node, r = l + 1;
    sum_[node].store(sum_[l].load(std::memory_order_relaxed) + sum_[r].load(std::memory_order_relaxed),
                     std::memory_order_relaxed);
    min_[node].store(std::min(min_[l].load(std::memory_order_relaxed), min_[r].load(std::memory_order_relaxed)),
                     std::memory_order_relaxed);
  }

  const uint64_t slots_, leaves_;
  std::atomic<double> alpha_;
  std::unique_ptr<std::atomic<double>[]> sum_;
  std::unique_ptr<std::atomic<float>[]> min_;
  std::unique_ptr<float[]> priority_;  // raw priorities per slot, -1 when not resident
  float max_priority_ = 1.0f;
  double max_powered_ = 1.0;
};

namespace {

void raise_to(std::atomic<uint64_t>& target, uint64_t value) {
  uint64_t current = target.load(std::memory_order_relaxed);
  while (current < value && !target.compare_exchange_weak(current, value, std::memory_order_relaxed)) {
  }
}

uint64_t nanoseconds_since(Clock::time_point start) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
}

}  // namespace

ExperienceBuffer::PriorityTrees* ExperienceBuffer::built_trees() const {
  return trees_built_.load(std::memory_order_acquire) ? trees_.get() : nullptr;
}

ExperienceBuffer::PriorityTrees& ExperienceBuffer::priority_trees(double alpha) {
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
// in a circle.
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

namespace {

// Empties a batch, keeping the memory of its columns for the next rows.
void clear_rows(RawBatch& b, int height, int width) {
  b.height = height;
  b.width = width;
  for (auto* v : {&b.sequence, &b.game_id}) v->clear();
  for (auto* v : {&b.player_id, &b.tick, &b.action, &b.state_index, &b.next_state_index}) v->clear();
  for (auto* v : {&b.legal, &b.terminated, &b.truncated, &b.state_kind}) v->clear();
  b.reward.clear();
  b.state_owner.clear();
  b.state_army.clear();
  b.nstep_next_state_index.clear();
  for (auto* v : {&b.weight, &b.nstep_reward}) v->clear();
  b.nstep_length.clear();
  b.nstep_done.clear();
  b.missed = 0;
  b.next_sequence = 0;
}

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
    for (auto* v : {&out_.sequence, &out_.game_id}) v->reserve(expected_rows);
    for (auto* v : {&out_.player_id, &out_.tick, &out_.action, &out_.state_index, &out_.next_state_index}) {
      v->reserve(expected_rows);
    }
    for (auto* v : {&out_.legal, &out_.terminated, &out_.truncated}) v->reserve(expected_rows);
    out_.reward.reserve(expected_rows);
    const size_t cells = with_states ? std::min<size_t>(expected_rows, 1 << 16) * tiles_ : 0;  // about one board a row
    out_.state_kind.reserve(cells);
    out_.state_owner.reserve(cells);
    out_.state_army.reserve(cells);
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
    out_.state_kind.resize(at + tiles_);  // unpacked in place
    out_.state_owner.resize(at + tiles_);
    out_.state_army.resize(at + tiles_);
    if (!load_state(id, out_.state_kind.data() + at, out_.state_owner.data() + at, out_.state_army.data() + at)) {
      out_.state_kind.resize(at);
      out_.state_owner.resize(at);
      out_.state_army.resize(at);
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

}  // namespace

size_t Cursor::tiles() const { return static_cast<size_t>(buffer_.tiles_); }

uint64_t Cursor::lag() const {
  const uint64_t head = buffer_.head();
  const uint64_t pos = position_.load();
  return head > pos ? head - pos : 0;
}

Cursor::~Cursor() {
  closed_.store(true);
  buffer_.notify_producers();
}

void Cursor::close() {
  closed_.store(true);
  buffer_.min_open_cursor();
  buffer_.notify_producers();
  buffer_.notify_readers();
}

void Cursor::read_raw(size_t max_items, double timeout_s, RawBatch& out, bool with_states) {
  std::lock_guard<std::mutex> guard(read_mutex_);
  RawSink sink(out, buffer_.height_, buffer_.width_, std::min<size_t>(max_items, 1 << 20), with_states);
  ExperienceBuffer::StateScratch scratch;
  auto load_state = [this, &scratch](uint64_t id, uint8_t* kind, int16_t* owner, int32_t* army) {
    return buffer_.load_state(id, scratch, kind, owner, army);
  };
  const auto deadline = deadline_after(timeout_s);
  uint64_t pos = position_.load();
  uint64_t missed = 0;
  ExperienceRecord record;
  size_t since_publish = 0;
  while (sink.size() < max_items) {
    // Overwrite policy: everything below the oldest is (being) replaced. Not
    // under block, where the head counts reservations of producers that wait
    // for this cursor: a record there is missed only when found replaced.
    if (buffer_.policy_ == FullPolicy::kOverwrite) {
      const uint64_t oldest = buffer_.oldest();
      if (pos < oldest) {
        missed += oldest - pos;
        pos = oldest;
      }
    }
    const int status = buffer_.load_record(pos, record);
    if (status == 0) {  // not written yet: wait for producers
      position_.store(pos);
      // Waits only for the first matching experience: what is there is returned at once.
      if (sink.size() > 0 || closed() || Clock::now() >= deadline) break;
      buffer_.readers_waiting_.fetch_add(1);
      {
        std::unique_lock<std::mutex> lock(buffer_.wait_mutex_);
        if (buffer_.load_record(pos, record) == 0) {
          buffer_.readers_cv_.wait_until(lock, std::min(deadline, Clock::now() + kMaxWaitSlice));
        }
      }
      buffer_.readers_waiting_.fetch_sub(1);
      continue;
    }
    if (status < 0 || (record.flags & kMissingFlag)) {
      missed += 1;
    } else if (filter_.matches(record) && !sink.add(pos, record, load_state)) {
      missed += 1;  // its state was overwritten before it could be read
    }
    pos += 1;
    if (++since_publish == 256) {
      since_publish = 0;
      position_.store(pos);
      if (buffer_.producers_waiting_.load() > 0) buffer_.notify_producers();
    }
  }
  position_.store(pos);
  if (buffer_.producers_waiting_.load() > 0) buffer_.notify_producers();
  missed_.fetch_add(missed);
  out.missed = missed;
  out.next_sequence = pos;
}

void Cursor::read_decoded(size_t max_items, double timeout_s, DecodedBatch& out) {
  thread_local RawBatch raw;  // its memory serves the next read
  read_raw(max_items, timeout_s, raw);
  buffer_.decode(raw, out);
}

std::shared_ptr<Cursor> ExperienceBuffer::open_cursor(Cursor::Start start, uint64_t at, CursorFilter filter) {
  uint64_t position = at;
  if (start == Cursor::kOldest) position = oldest();
  if (start == Cursor::kNewest) position = head_.load();
  std::shared_ptr<Cursor> cursor(new Cursor(*this, position, std::move(filter)));
  std::lock_guard<std::mutex> lock(cursors_mutex_);
  cursors_.push_back(cursor);
  if (policy_ == FullPolicy::kBlock) {
    uint64_t cached = min_cursor_cache_.load();
    while (position < cached && !min_cursor_cache_.compare_exchange_weak(cached, position)) {
    }
  }
  return cursor;
}

namespace {

// compute_open_directions for the tiles a move can start from (owned, with at
// least 2 armies): the only ones encode_action_mask reads, and a fraction of
// the board. Other entries are left as they are.
void movable_open_directions(const StateView& s, uint8_t* open) {
  const int h = s.height, w = s.width;
  for (int t = 0; t < h * w; ++t) {
    if (s.owner[t] < 0 || s.army[t] < 2) continue;
    const int y = t / w, x = t % w;
    uint8_t bits = 0;
    for (int d = 0; d < 4; ++d) {
      const int ny = y + kDy[d], nx = x + kDx[d];
      if (ny >= 0 && ny < h && nx >= 0 && nx < w && s.kind[ny * w + nx] != kMountain) bits |= uint8_t(1u << d);
    }
    open[t] = bits;
  }
}

}  // namespace

namespace {

// Decodes rows [begin, end) of a batch whose output columns are sized.
void decode_rows(const RawBatch& raw, const ObservationConfig& config, DecodedBatch& out, size_t begin, size_t end) {
  const size_t tiles = static_cast<size_t>(raw.height) * raw.width;
  const size_t obs_size = kObservationChannels * tiles;
  const bool nstep = !raw.nstep_next_state_index.empty();
  std::vector<uint8_t> scratch(tiles * kObservationScratchPerTile);
  std::vector<uint8_t> open(tiles);
  int32_t open_row = -1;
  auto view_of = [&](int32_t row) {
    return StateView{raw.height, raw.width, raw.state_kind.data() + row * tiles, raw.state_owner.data() + row * tiles,
                     raw.state_army.data() + row * tiles, nullptr};
  };
  // A (board, player) tensor already written in these rows is copied, not
  // encoded again: across consecutive ticks, a row's next_state is a later
  // row's state. Entries: 3 * row + (0 state, 1 next_state, 2 n-step state) + 1;
  // 0 when not yet.
  int players = 0;
  for (size_t i = begin; i < end; ++i) players = std::max(players, raw.player_id[i] + 1);
  std::vector<uint64_t> written(raw.state_kind.size() / std::max<size_t>(tiles, 1) * players, 0);
  float* const tensors[3] = {out.state.data(), out.next_state.data(), out.nstep_next_state.data()};
  auto tensor = [&](uint64_t entry) { return tensors[entry % 3] + (entry / 3) * obs_size; };
  auto encode = [&](int32_t row, int player, uint64_t entry, const StateView& view) {
    if (player < 0) {  // no player's view: nothing to share
      encode_observation(view, player, config, tensor(entry), scratch.data());
      return;
    }
    uint64_t& known = written[static_cast<size_t>(row) * players + player];
    if (known != 0) {
      std::memcpy(tensor(entry), tensor(known - 1), obs_size * sizeof(float));
    } else {
      encode_observation(view, player, config, tensor(entry), scratch.data());
      known = entry + 1;
    }
  };
  for (size_t i = begin; i < end; ++i) {
    const int player = raw.player_id[i];
    StateView state = view_of(raw.state_index[i]);
    if (open_row != raw.state_index[i]) {
      open_row = raw.state_index[i];
      movable_open_directions(state, open.data());
    }
    state.open_directions = open.data();
    encode(raw.state_index[i], player, 3 * i, state);
    encode_action_mask(state, player, out.action_mask.data() + i * tiles * 4);
    encode(raw.next_state_index[i], player, 3 * i + 1, view_of(raw.next_state_index[i]));
    if (nstep) {
      encode(raw.nstep_next_state_index[i], player, 3 * i + 2, view_of(raw.nstep_next_state_index[i]));
    }
  }
}

}  // namespace

void decode_batch(const RawBatch& raw, const ObservationConfig& config, DecodedBatch& out, ThreadPool* pool) {
  const size_t n = raw.size();
  const size_t tiles = static_cast<size_t>(raw.height) * raw.width;
  const size_t obs_size = kObservationChannels * tiles;
  static_cast<RecordColumns&>(out) = raw;
  out.state.resize(n * obs_size);
  out.next_state.resize(n * obs_size);
  out.action_mask.resize(n * tiles * 4);
  out.nstep_next_state.resize(raw.nstep_next_state_index.empty() ? 0 : n * obs_size);
  if (pool && pool->size() > 1 && n >= 64) {
    pool->parallel_for(static_cast<int>(n), [&](int begin, int end) { decode_rows(raw, config, out, begin, end); });
  } else {
    decode_rows(raw, config, out, 0, n);
  }
}

void ExperienceBuffer::prefetch_state(uint64_t id) const {
  const uint64_t slot = id % state_capacity_;
  __builtin_prefetch(&state_stamp_[slot]);
  const char* words = reinterpret_cast<const char*>(state_words_store_.get() + slot * state_words_);
  for (size_t offset = 0; offset < state_words_ * sizeof(uint64_t); offset += 64) __builtin_prefetch(words + offset);
}

bool ExperienceBuffer::successor(const ExperienceRecord& r, ExperienceRecord& out) const {
  const uint64_t link = state_first_use_[r.next_state_id % state_capacity_].load(std::memory_order_acquire);
  if (link == 0) return false;
  const uint64_t head = head_.load();
  // A tick's experiences of one game are appended together: the successor is
  // among the first few observing the state (64 leave room for other batches).
  for (uint64_t seq = link - 1; seq < head && seq < link - 1 + 64; ++seq) {
    if (load_record(seq, out) != 1 || (out.flags & kMissingFlag) || out.state_id != r.next_state_id) {
      if (seq == link - 1) return false;  // the slot's link is of an older state
      continue;
    }
    if (out.game_id == r.game_id && out.player == r.player) return true;
  }
  return false;
}

template <typename Sink>
void ExperienceBuffer::sample_into(size_t count, uint64_t seed, Sink& sink, const SampleOptions& o) {
  Rng rng(seed);
  StateScratch scratch;
  auto load = [this, &scratch](uint64_t id, uint8_t* kind, int16_t* owner, int32_t* army) {
    return load_state(id, scratch, kind, owner, army);
  };
  PriorityTrees* trees = nullptr;
  if (o.prioritized) {
    trees = &priority_trees(o.alpha);
    if (trees->alpha() != o.alpha) {  // a new exponent: every leaf again, O(capacity)
      std::lock_guard<std::mutex> lock(trees->mutex);
      const auto start = Clock::now();
      if (trees->alpha() != o.alpha) trees->set_alpha(o.alpha);
      raise_to(trees->updater_ns_max, nanoseconds_since(start));
    }
  }
  // Weights are (P(i) / P_min)^-beta = (min_leaf / leaf_i)^beta, the maximum weight being 1.
  const double min_leaf = trees ? trees->min_leaf() : 0.0;
  RawBatch& out = sink.batch();
  struct Step {
    float reward;
    uint8_t flags;
    uint64_t next_state_id;
  };
  std::vector<Step> chain;
  ExperienceRecord record, next;
  // Draws come in rounds, each in passes over all its rows (positions, then
  // records, then states) so that the cache misses of a pass overlap, each
  // pass prefetching for the next.
  struct Draw {
    uint64_t seq;
    double leaf;
    ExperienceRecord record;
  };
  std::vector<Draw> draws;
  std::vector<double> masses;
  std::vector<uint64_t> slots;
  size_t attempts = 0;
  // Rejections (a filtered player, an experience just overwritten) draw again, within bounds.
  const size_t max_attempts = count * 64 + 1024;
  bool empty = false;
  while (!empty && sink.size() < count && attempts < max_attempts) {
    const size_t need = std::min(count - sink.size(), max_attempts - attempts);
    attempts += need;
    draws.clear();
    if (trees) {
      const double total = trees->total();
      if (!(total > 0)) break;
      masses.resize(need);
      slots.resize(need);
      for (double& mass : masses) mass = rng.uniform() * total;
      trees->find_many(masses.data(), need, slots.data());
      for (const uint64_t slot : slots) {
        double leaf = 0;
        if (slot >= capacity_ || !((leaf = trees->leaf(slot)) > 0)) continue;
        const uint64_t stamp = records_[slot].stamp.load(std::memory_order_acquire);
        if (stamp == 0 || (stamp & kBusy) || stamp - 1 < oldest()) continue;
        draws.push_back({stamp - 1, leaf, {}});
      }
    } else {
      const uint64_t head = head_.load(), low = oldest();
      empty = head == low;
      for (size_t k = 0; k < need && !empty; ++k) {
        draws.push_back({low + (rng.next() % (head - low)), 0.0, {}});
        __builtin_prefetch(&records_[draws.back().seq % capacity_]);
      }
    }
    size_t kept = 0;
    for (Draw& d : draws) {
      if (load_record(d.seq, d.record) != 1 || (d.record.flags & kMissingFlag)) continue;
      if (!o.player_ids.empty() &&
          std::find(o.player_ids.begin(), o.player_ids.end(), d.record.player) == o.player_ids.end()) {
        continue;
      }
      prefetch_state(d.record.state_id);
      prefetch_state(d.record.next_state_id);
      draws[kept++] = d;
    }
    draws.resize(kept);
    for (const Draw& d : draws) {
      record = d.record;
      const double leaf = d.leaf;
      if (!sink.add(d.seq, record, load)) continue;
      if (trees) out.weight.push_back(static_cast<float>(std::min(1.0, std::pow(min_leaf / leaf, o.beta))));
      if (o.n_step > 0) {
        chain.clear();
        next = record;
        while (true) {
          chain.push_back({next.reward, next.flags, next.next_state_id});
          if ((next.flags & (kTerminated | kTruncated)) || chain.size() == static_cast<size_t>(o.n_step)) break;
          ExperienceRecord following;
          if (!successor(next, following)) break;
          next = following;
        }
        // The bootstrap state must be readable: shorten the chain when it is not
        // (the first step's next state is in the batch already).
        int32_t row = -1;
        while ((row = sink.state_row(chain.back().next_state_id, load)) < 0) chain.pop_back();
        double discounted = 0, discount = 1;
        for (const Step& step : chain) {
          discounted += discount * step.reward;
          discount *= o.gamma;
        }
        out.nstep_reward.push_back(static_cast<float>(discounted));
        out.nstep_length.push_back(static_cast<int32_t>(chain.size()));
        out.nstep_done.push_back((chain.back().flags & kTerminated) != 0);
        out.nstep_next_state_index.push_back(row);
      }
    }
  }
}

void ExperienceBuffer::sample_raw(size_t count, uint64_t seed, RawBatch& out, const SampleOptions& options) {
  RawSink sink(out, height_, width_, std::min<size_t>(count, 1 << 20));
  sample_into(count, seed, sink, options);
  out.next_sequence = head_.load();
}

void ExperienceBuffer::sample(size_t count, uint64_t seed, DecodedBatch& out, const SampleOptions& options) {
  thread_local RawBatch raw;  // its memory serves the next call
  sample_raw(count, seed, raw, options);
  decode(raw, out);
}

void ExperienceBuffer::decode(const RawBatch& raw, DecodedBatch& out) const {
  // Spread over a pool of this buffer's own (one decode on it at a time; a
  // concurrent one decodes on its caller's thread).
  if (raw.size() >= 64) {
    std::unique_lock<std::mutex> lock(decode_pool_mutex_, std::try_to_lock);
    if (lock.owns_lock()) {
      if (!decode_pool_) {
        const int threads = static_cast<int>(std::min(8u, std::max(1u, std::thread::hardware_concurrency())));
        decode_pool_ = std::make_unique<ThreadPool>(threads);
      }
      decode_batch(raw, observation_, out, decode_pool_.get());
      return;
    }
  }
  decode_batch(raw, observation_, out);
}

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

void check_raw_batch(const RawBatch& b, int height, int width) {
  if (b.height != height || b.width != width) {
    throw std::invalid_argument("batch board is " + std::to_string(b.height) + "x" + std::to_string(b.width) +
                                ", the buffer's is " + std::to_string(height) + "x" + std::to_string(width));
  }
  const size_t n = b.size(), tiles = static_cast<size_t>(height) * width;
  for (const size_t len : {b.game_id.size(), b.player_id.size(), b.tick.size(), b.action.size(), b.reward.size(),
                           b.legal.size(), b.terminated.size(), b.truncated.size(), b.state_index.size(),
                           b.next_state_index.size()}) {
    if (len != n) throw std::invalid_argument("batch columns differ in length");
  }
  if (b.state_kind.size() % tiles || b.state_owner.size() != b.state_kind.size() ||
      b.state_army.size() != b.state_kind.size()) {
    throw std::invalid_argument("batch state tables do not hold whole boards");
  }
  const int64_t states = static_cast<int64_t>(b.state_kind.size() / tiles);
  for (size_t i = 0; i < n; ++i) {
    if (b.state_index[i] < 0 || b.state_index[i] >= states || b.next_state_index[i] < 0 ||
        b.next_state_index[i] >= states) {
      throw std::invalid_argument("row " + std::to_string(i) + ": state index out of range");
    }
    if (b.player_id[i] < 0 || b.player_id[i] >= kMaxPlayers) {
      throw std::invalid_argument("row " + std::to_string(i) + ": player_id " + std::to_string(b.player_id[i]) +
                                  " outside 0..15");
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
  check_raw_batch(b, height_, width_);
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
  check_raw_batch(b, height_, width_);
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
