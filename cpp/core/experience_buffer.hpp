// A bounded ring of experiences with a global 64-bit sequence number each.
//
// Game states are stored once per game tick in a second ring (compact: one
// byte per tile for kind and owner, 16 bits per tile for the army) and shared
// by every player's experience of that tick and by the next_state of the tick
// before; observations and masks are decoded from them on read.
//
// Producers (a VecEnv's worker threads, remote submitters) append without
// locks: they reserve sequence ranges with one atomic add and publish each
// slot with a seqlock-style stamp. Readers hold cursors (every cursor sees
// every experience in order) or sample uniformly from what is resident.
//
// When the ring is full, `block` makes producers wait while an open cursor
// would be overrun; `overwrite` replaces the oldest entries and tells a cursor
// that fell behind exactly how many experiences it missed.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "batch.hpp"
#include "compact_observation.hpp"
#include "game.hpp"
#include "observation.hpp"

namespace grl {

// Raised when a producer in block mode gave up waiting for cursors to read.
struct BufferFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class FullPolicy : uint8_t { kBlock = 0, kOverwrite = 1 };

// Sequence numbers stay below this (a century at a billion a second): slot
// stamps are sequence + 1 with the top bit marking a write in progress.
constexpr uint64_t kMaxSequence = 1ULL << 62;

// One experience as stored: 40 bytes, plus the slot's sequence stamp.
struct ExperienceRecord {
  uint64_t game_id;
  uint64_t state_id;       // the state observed at `tick`
  uint64_t next_state_id;  // the state after the tick's moves and growth
  int32_t tick;
  int32_t action;  // the flat index submitted; -1 for a pass
  float reward;
  uint8_t player;
  uint8_t flags;  // ExperienceFlags (schema.hpp)
  uint16_t reserved;
};
static_assert(sizeof(ExperienceRecord) == 40);

// Unique game ids across processes: a random 64-bit prefix drawn once per
// process plus a process-wide counter.
uint64_t next_game_id();

struct CursorFilter {
  std::vector<uint64_t> game_ids;  // empty: any
  std::vector<int32_t> player_ids; // empty: any
  int32_t min_tick = 0;
  bool matches(const ExperienceRecord& r) const;
};

// What to sample and what to compute for each sampled experience.
struct SampleOptions {
  bool prioritized = false;  // proportional to priority^alpha, else uniform
  double alpha = 0.6;        // priority exponent (prioritized)
  double beta = 0.4;         // importance weight exponent (prioritized)
  std::vector<int32_t> player_ids;  // empty: any player
  int n_step = 0;            // > 0: n-step returns over at most n experiences
  double gamma = 0.99;       // their discount
};

// Counters of the priority trees (all zero until first used).
struct PriorityStats {
  bool enabled = false;
  double alpha = 0, max_priority = 0, total = 0;  // total: sum of priority^alpha
  uint64_t bytes = 0, updates = 0, updates_ignored = 0;
  // Producers' time in the trees' critical section (waiting for it included), per append.
  uint64_t producer_sections = 0, producer_ns_total = 0, producer_ns_max = 0;
  // Longest hold of the lock by a priority update or an alpha change.
  uint64_t updater_ns_max = 0;
};

class ExperienceBuffer;
class PriorityTrees;

// A batch with compact views instead of state tables (Cursor::read_views):
// the records (no state tables, state indices -1), each row's view of its state
// and of its next state, how many views were made and the width of their
// armies. The views themselves go where the reader said.
struct ViewBatch {
  RawBatch rows;
  std::vector<int32_t> state_view, next_state_view;
  size_t views = 0;
  ArmyWidth army_width = ArmyWidth::kByte;
};

class Cursor {
 public:
  enum Start { kOldest, kNewest, kAt };
  ~Cursor();

  // Reads up to max_items matching experiences, waiting up to timeout_s for
  // the first one. Returns fewer (possibly none) when the timeout passes or
  // the cursor is closed.
  // Without `with_states`, only the records (state indices -1, no state tables):
  // for readers that count or filter, at a fraction of the cost.
  // Reads stop before sequence `end` (the cursor then rests there).
  void read_raw(size_t max_items, double timeout_s, RawBatch& out, bool with_states = true,
                uint64_t end = UINT64_MAX);
  void read_decoded(size_t max_items, double timeout_s, DecodedBatch& out);
  // As read_raw, but instead of state tables each distinct (state, player) of
  // the rows as a compact view, made once while its state is unpacked, in the
  // order first needed: codes to out.codes; armies to `byte_armies` while every
  // army of the states read fits a byte, else (all of them) to out.armies, of
  // out.width. Each output has room for two views a row.
  void read_views(size_t max_items, double timeout_s, uint64_t end, bool obstacles, CompactRowsOut out,
                  uint8_t* byte_armies, ViewBatch& batch);
  // Stops holding producers back; reads return what is left without waiting.
  void close();
  bool closed() const { return closed_.load(); }
  uint64_t position() const { return position_.load(); }
  uint64_t lag() const;
  uint64_t total_missed() const { return missed_.load(); }
  size_t tiles() const;

 private:
  friend class ExperienceBuffer;
  Cursor(ExperienceBuffer& buffer, uint64_t position, CursorFilter filter)
      : buffer_(buffer), filter_(std::move(filter)), position_(position) {}
  // The read loop of every read: matching records into `sink` (see RawSink).
  template <typename Sink>
  void read(size_t max_items, double timeout_s, uint64_t end, Sink& sink, RecordColumns& out);

  ExperienceBuffer& buffer_;
  CursorFilter filter_;
  std::atomic<uint64_t> position_;
  std::atomic<uint64_t> missed_{0};
  std::atomic<bool> closed_{false};
  std::mutex read_mutex_;  // one reader at a time per cursor
};

struct BufferStats {
  uint64_t capacity, state_capacity, resident, resident_states, bytes_used, total_appended,
      total_overwritten, total_states;
  std::vector<uint64_t> cursor_lag;
};

class ExperienceBuffer {
 public:
  ExperienceBuffer(int height, int width, uint64_t capacity, FullPolicy policy,
                   uint64_t state_capacity = 0, ObservationConfig observation = {});
  ~ExperienceBuffer();
  ExperienceBuffer(const ExperienceBuffer&) = delete;
  ExperienceBuffer& operator=(const ExperienceBuffer&) = delete;

  // ---- producers -----------------------------------------------------------
  // Waits until `experiences` more experiences and `states` more states fit
  // without overrunning an open cursor; false on timeout (nothing changes).
  bool wait_for_room(uint64_t experiences, uint64_t states, double timeout_s);
  // Stores a game's board; returns its state id, held by the caller until
  // release_state. In block mode it waits while the slot's previous state is
  // held or referenced by an experience an open cursor has not read.
  uint64_t append_state(const uint8_t* kind, const int16_t* owner, const int32_t* army);
  uint64_t append_state(const Game& game) { return append_state(game.kind(), game.owner(), game.army()); }
  // append_state in two parts: the id and its slot first (waiting as above),
  // the board later. A producer must not reserve while it holds a state or
  // has a reserved slot it has not written: reserve first, then hold.
  uint64_t reserve_state();
  void write_state(uint64_t id, const uint8_t* kind, const int16_t* owner, const int32_t* army);
  void write_state(uint64_t id, const Game& game) { write_state(id, game.kind(), game.owner(), game.army()); }
  // Holds a state stored earlier, for experiences about to refer to it; false
  // when it is no longer resident or a later state claimed its slot: store the
  // board again (into a slot reserved before this call).
  bool hold_state(uint64_t id);
  // Lets a held state be replaced once the experiences referring to it are
  // read (block mode). Release a state after appending those experiences.
  void release_state(uint64_t id);
  // Appends experiences with consecutive sequence numbers; returns the first.
  // Their states must be held by the caller.
  uint64_t append(const ExperienceRecord* records, size_t count);

  // ---- consumers -----------------------------------------------------------
  std::shared_ptr<Cursor> open_cursor(Cursor::Start start, uint64_t at, CursorFilter filter);
  // Random experiences (with replacement) from what is resident: uniform, or
  // proportional to priority^alpha with importance weights (see SampleOptions).
  void sample(size_t count, uint64_t seed, DecodedBatch& out, const SampleOptions& options = {});
  void sample_raw(size_t count, uint64_t seed, RawBatch& out, const SampleOptions& options = {});
  void decode(const RawBatch& raw, DecodedBatch& out) const;

  // ---- priorities ----------------------------------------------------------
  // A sum-tree and a min-tree over the ring's slots hold priority^alpha of the
  // resident experiences. They are built on first use (prioritized sampling or
  // a priority update), every resident experience at the maximum priority;
  // from then on appends enter at the maximum priority seen and leave the
  // trees when overwritten. Sampling reads the trees without locking.
  //
  // Sets the priorities of the experiences `sequences`; those no longer
  // resident are ignored and counted (returned). Priorities must be finite and
  // >= 0 (checked by the caller); 0 is never sampled.
  uint64_t update_priorities(const uint64_t* sequences, const float* priorities, size_t count);
  // The priorities of `sequences` (-1 when not resident or trees not built).
  void priorities(const uint64_t* sequences, size_t count, float* out) const;
  // Restores saved priorities: as update_priorities, then the maximum.
  void restore_priorities(const uint64_t* sequences, const float* priorities, size_t count, float max_priority);
  PriorityStats priority_stats() const;

  // ---- persistence ---------------------------------------------------------
  // Resident experiences in sequence order, as a raw batch.
  void export_resident(RawBatch& out);
  // Loads a raw batch (states and records) keeping its sequence numbers; the
  // buffer must be empty. Used to restore saved contents.
  void import_resident(const RawBatch& batch);
  // Appends a raw batch from a remote producer (new sequence numbers).
  uint64_t append_raw(const RawBatch& batch);

  BufferStats stats() const;
  int height() const { return height_; }
  int width() const { return width_; }
  uint64_t capacity() const { return capacity_; }
  uint64_t state_capacity() const { return state_capacity_; }
  FullPolicy policy() const { return policy_; }
  const ObservationConfig& observation_config() const { return observation_; }
  uint64_t head() const { return head_.load(); }
  uint64_t oldest() const;

 private:
  friend class Cursor;
  struct RecordSlot;
  // A state's slot words, copied out under its stamp.
  struct StateScratch {
    std::vector<uint64_t> words;
  };

  // Copies record `seq` out of its slot; 1 ok, 0 not yet written, -1 overwritten.
  int load_record(uint64_t seq, ExperienceRecord& out) const;
  // Writes state `id`'s tiles; false when it is no longer resident.
  bool load_state(uint64_t id, StateScratch& scratch, uint8_t* kind, int16_t* owner, int32_t* army) const;
  // False when a later lap took the slot first (overwrite policy).
  bool write_state_slot(uint64_t id, const uint8_t* kind, const int16_t* owner, const int32_t* army);
  // Stores a batch's boards under consecutive ids, held; returns the ids.
  std::vector<uint64_t> append_states(const RawBatch& batch);
  // Block policy: waits until state `id` may take its slot, then holds it.
  void claim_state_slot(uint64_t id);
  void wait_for_producers(int& spins);
  uint64_t oldest_at(uint64_t head) const;
  uint64_t ring_bytes() const;  // the records' and states' rings, allocated up front
  uint64_t min_open_cursor();  // UINT64_MAX without open cursors
  bool state_slot_ready(uint64_t id, uint64_t min_cursor) const;
  void notify_readers();
  void notify_producers();
  template <typename Sink>
  void sample_into(size_t count, uint64_t seed, Sink& sink, const SampleOptions& options);
  // The trees, built on first use (alpha given for that first build).
  PriorityTrees& priority_trees(double alpha);
  PriorityTrees* built_trees() const;  // nullptr before first use
  // The record after `r` of the same game and player (the one observing r's
  // next state); false when there is none resident.
  bool successor(const ExperienceRecord& r, ExperienceRecord& out) const;
  void prefetch_state(uint64_t id) const;  // its slot into the cache, ahead of load_state
  // Producers: puts just appended records into the trees (once they are built).
  void enter_priorities(const ExperienceRecord* records, uint64_t first, size_t count);

  const int height_, width_, tiles_;
  const uint64_t capacity_, state_capacity_;
  const FullPolicy policy_;
  const ObservationConfig observation_;
  const size_t state_words_;  // 8-byte words per state slot payload

  std::unique_ptr<RecordSlot[]> records_;
  std::unique_ptr<std::atomic<uint64_t>[]> state_stamp_;     // id + 1; busy bit while writing
  std::unique_ptr<std::atomic<uint64_t>[]> state_last_ref_;  // highest referencing seq + 1; kPinned while held
  std::unique_ptr<uint64_t[]> state_words_store_;
  std::atomic<uint64_t> head_{0};        // next sequence to reserve
  std::atomic<uint64_t> state_head_{0};  // next state id to reserve
  std::atomic<uint64_t> first_sequence_{0};  // lowest sequence ever held (above 0 after a load)

  // States with an army above 65535 keep their full armies here.
  mutable std::mutex wide_mutex_;
  std::unordered_map<uint64_t, std::vector<int32_t>> wide_armies_;
  std::atomic<uint64_t> wide_count_{0};

  std::mutex cursors_mutex_;
  std::vector<std::weak_ptr<Cursor>> cursors_;
  std::atomic<uint64_t> min_cursor_cache_{UINT64_MAX};

  std::mutex wait_mutex_;
  std::condition_variable readers_cv_, producers_cv_;
  std::atomic<int> readers_waiting_{0}, producers_waiting_{0};

  // Per state slot: seq + 1 of the first experience observing that state (for
  // n-step returns: a state's observers follow the experiences leading to it).
  std::unique_ptr<std::atomic<uint64_t>[]> state_first_use_;

  std::mutex trees_build_mutex_;
  std::unique_ptr<PriorityTrees> trees_;
  std::atomic<bool> trees_built_{false};

  mutable std::mutex decode_pool_mutex_;  // one decode on the pool at a time
  mutable std::unique_ptr<ThreadPool> decode_pool_;
};

}  // namespace grl
