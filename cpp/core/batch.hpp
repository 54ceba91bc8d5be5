// The two forms of a batch of experiences, their columns declared from the
// schema (schema.hpp): raw (compact states shared by the rows) and decoded
// (observation tensors and masks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "observation.hpp"
#include "schema.hpp"

namespace grl {

// Allocates like std::allocator but leaves elements added by resize
// uninitialized: batch columns are written in full right after they grow.
template <typename T>
struct UninitializedAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <typename U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// One column of a batch.
template <typename T>
using Column = std::vector<T, UninitializedAllocator<T>>;

#define GRL_DECLARE_COLUMN(name, Stored, Exposed, dtype, shape) Column<Stored> name;

// The record columns (one value per experience) both batch forms carry, and
// the columns sampling fills on request (empty otherwise; the n-step
// bootstrap state is in each form's own n-step column).
struct RecordColumns {
  int height = 0, width = 0;
  GRL_RECORD_COLUMNS(GRL_DECLARE_COLUMN)
  GRL_SAMPLE_COLUMNS(GRL_DECLARE_COLUMN)
  uint64_t missed = 0;         // experiences lost to overwriting before/within this batch
  uint64_t next_sequence = 0;  // where the cursor resumes
  size_t size() const { return sequence.size(); }
};

// A batch in compact form: the records plus the distinct states they refer to.
struct RawBatch : RecordColumns {
  GRL_STATE_INDEX_COLUMNS(GRL_DECLARE_COLUMN)
  GRL_STATE_INDEX_SAMPLE_COLUMNS(GRL_DECLARE_COLUMN)
  GRL_STATE_TABLES(GRL_DECLARE_COLUMN)
  size_t tiles() const { return static_cast<size_t>(height) * width; }
  size_t states() const { return tiles() ? state_kind.size() / tiles() : 0; }
};

// A batch with states decoded to observation tensors and masks.
struct DecodedBatch : RecordColumns {
  GRL_DECODED_COLUMNS(GRL_DECLARE_COLUMN)
  GRL_DECODED_SAMPLE_COLUMNS(GRL_DECLARE_COLUMN)
};

#undef GRL_DECLARE_COLUMN

// A raw batch's columns viewed where they are (a RawBatch, numpy arrays): what
// validation reads.
#define GRL_DECLARE_SPAN(name, Stored, Exposed, dtype, shape) std::span<const Stored> name;
struct RawBatchView {
  int height = 0, width = 0;
  GRL_RECORD_COLUMNS(GRL_DECLARE_SPAN)
  GRL_STATE_INDEX_COLUMNS(GRL_DECLARE_SPAN)
  GRL_STATE_INDEX_SAMPLE_COLUMNS(GRL_DECLARE_SPAN)
  GRL_STATE_TABLES(GRL_DECLARE_SPAN)
  uint64_t next_sequence = 0;
  size_t size() const { return sequence.size(); }
  size_t tiles() const { return static_cast<size_t>(height) * width; }
  size_t states() const { return tiles() ? state_kind.size() / tiles() : 0; }
};
#undef GRL_DECLARE_SPAN

RawBatchView view_of(const RawBatch& batch);

// Empties a batch (every column), keeping the memory of its columns, for a
// height x width board.
void clear_rows(RawBatch& batch, int height, int width);

// Throws std::invalid_argument naming the first problem unless `batch` is a
// well-formed raw batch of height x width boards: columns of one length, whole
// boards in the state tables, state indices (n-step ones too) inside them,
// players, kinds, owners and armies in range (those values only with
// `check_values`). The one raw-batch check: the buffer, decoding, storage
// writers and the wire's unpacking all call it.
void validate_raw_batch(const RawBatchView& batch, int height, int width, bool check_values = true);
inline void validate_raw_batch(const RawBatch& batch, int height, int width) {
  validate_raw_batch(view_of(batch), height, width);
}

class ThreadPool;

// Decodes a raw batch's states into observation tensors and masks, in bulk;
// spread over `pool` when given (rows split into contiguous parts).
void decode_batch(const RawBatch& raw, const ObservationConfig& config, DecodedBatch& out,
                  ThreadPool* pool = nullptr);

}  // namespace grl
