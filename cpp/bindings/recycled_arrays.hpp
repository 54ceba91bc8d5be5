// Numpy arrays over recycled memory, for outputs made batch after batch (the
// compact stream's views and masks). A page the process has never touched
// costs a fault, which here costs about as much as computing the page's
// views; memory of arrays that are gone is kept (up to kKeptBytes, the most
// recently returned first) and handed to the next array of a similar size,
// whose pages are then already mapped.
//
// Blocks are mapped from the system on their own and unmapped when dropped, so
// a dropped block returns its memory at once; from the heap, blocks of
// batches' varying sizes left it fragmented and the process kept growing.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define GRL_MAPPED_BLOCKS 1
#endif

namespace grl::bindings {

class RecycledBlocks {
 public:
  static constexpr size_t kKeptBytes = size_t{64} << 20;
  static constexpr size_t kAlignment = 4096;

  struct Block {
    void* data;
    size_t capacity;
  };

  static RecycledBlocks& shared() {
    static auto* blocks = new RecycledBlocks;  // never destroyed: arrays may outlive static destruction
    return *blocks;
  }

  // Capacities come in classes a quarter of a power of two apart (whole
  // pages), so that a kept block fits the next batches of about its size.
  static size_t capacity_class(size_t bytes) {
    const size_t wanted = std::max(bytes, kAlignment);
    const size_t quarter = std::max<size_t>(std::bit_floor(wanted - 1) / 4, 1);
    const size_t rounded = (wanted + quarter - 1) / quarter * quarter;
    return (rounded + kAlignment - 1) / kAlignment * kAlignment;
  }

  // A block of at least `bytes`: a kept one no more than twice that size, else a new one.
  Block* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      size_t best = kept_.size();
      for (size_t i = 0; i < kept_.size(); ++i) {
        const size_t capacity = kept_[i]->capacity;
        if (capacity >= bytes && capacity <= 2 * bytes && (best == kept_.size() || capacity < kept_[best]->capacity)) {
          best = i;
        }
      }
      if (best < kept_.size()) {
        Block* block = kept_[best];
        kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(best));
        kept_bytes_ -= block->capacity;
        return block;
      }
    }
    // A quarter more, so that the next batch, a little larger, fits too (pages
    // never touched cost nothing).
    auto block = std::make_unique<Block>(Block{nullptr, capacity_class(bytes + bytes / 4)});
    block->data = map(block->capacity);
    return block.release();
  }

  // Keeps `block` for a later take, dropping the blocks returned longest ago
  // beyond kKeptBytes (of sizes the batches may no longer have).
  void give_back(Block* block) {
    if (block->capacity > kKeptBytes) {  // never kept: it would push out every other
      drop(block);
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    kept_.push_back(block);
    kept_bytes_ += block->capacity;
    while (kept_bytes_ > kKeptBytes) {
      Block* oldest = kept_.front();
      kept_.erase(kept_.begin());
      kept_bytes_ -= oldest->capacity;
      drop(oldest);
    }
  }

 private:
  static void* map(size_t bytes) {
#ifdef GRL_MAPPED_BLOCKS
    void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) throw std::bad_alloc();
#else
    void* data = std::aligned_alloc(kAlignment, bytes);
    if (!data) throw std::bad_alloc();
#endif
    return data;
  }

  static void drop(Block* block) {
#ifdef GRL_MAPPED_BLOCKS
    munmap(block->data, block->capacity);
#else
    std::free(block->data);
#endif
    delete block;
  }

  std::mutex mutex_;
  std::vector<Block*> kept_;  // oldest first
  size_t kept_bytes_ = 0;
};

// A recycled block to write into before the shape of what it holds is known:
// `array` hands it to a numpy array; otherwise it goes back when this does.
class RecycledOutput {
 public:
  explicit RecycledOutput(size_t bytes) : block_(RecycledBlocks::shared().take(bytes)) {}
  RecycledOutput(const RecycledOutput&) = delete;
  RecycledOutput& operator=(const RecycledOutput&) = delete;
  ~RecycledOutput() {
    if (block_) RecycledBlocks::shared().give_back(block_);
  }
  void* data() const { return block_->data; }

  // A C-contiguous array of T of `shape` (within the block) over it.
  template <typename T>
  pybind11::array_t<T> array(const std::vector<pybind11::ssize_t>& shape) {
    RecycledBlocks::Block* block = std::exchange(block_, nullptr);
    pybind11::capsule owner(block, [](void* p) { RecycledBlocks::shared().give_back(static_cast<RecycledBlocks::Block*>(p)); });
    return pybind11::array_t<T>(shape, static_cast<T*>(block->data), owner);
  }

 private:
  RecycledBlocks::Block* block_;
};

// A C-contiguous array of T of `shape` over a recycled block.
template <typename T>
pybind11::array_t<T> recycled_array(const std::vector<pybind11::ssize_t>& shape) {
  size_t count = 1;
  for (const auto side : shape) count *= static_cast<size_t>(side);
  return RecycledOutput(count * sizeof(T)).array<T>(shape);
}

}  // namespace grl::bindings
