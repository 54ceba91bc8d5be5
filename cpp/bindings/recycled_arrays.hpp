// Numpy arrays over recycled memory, for outputs made batch after batch (the
// compact stream's views and masks). A page the process has never touched
// costs a fault, which here costs about as much as computing the page's
// views; memory of arrays that are gone is kept (up to kKeptBytes) and handed
// to the next array of a similar size, whose pages are then already mapped.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace grl::bindings {

class RecycledBlocks {
 public:
  static constexpr size_t kKeptBytes = size_t{128} << 20;
  static constexpr size_t kAlignment = 4096;

  struct Block {
    void* data;
    size_t capacity;
  };

  static RecycledBlocks& shared() {
    static auto* blocks = new RecycledBlocks;  // never destroyed: arrays may outlive static destruction
    return *blocks;
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
        kept_[best] = kept_.back();
        kept_.pop_back();
        kept_bytes_ -= block->capacity;
        return block;
      }
    }
    // A quarter more, so that the next batch, a little larger, fits too (pages
    // never touched cost nothing).
    const size_t wanted = std::max<size_t>(bytes + bytes / 4, 1);
    const size_t capacity = (wanted + kAlignment - 1) / kAlignment * kAlignment;
    void* data = std::aligned_alloc(kAlignment, capacity);
    if (!data) throw std::bad_alloc();
    return new Block{data, capacity};
  }

  void give_back(Block* block) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (kept_bytes_ + block->capacity <= kKeptBytes) {
        kept_.push_back(block);
        kept_bytes_ += block->capacity;
        return;
      }
    }
    std::free(block->data);
    delete block;
  }

 private:
  std::mutex mutex_;
  std::vector<Block*> kept_;
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
