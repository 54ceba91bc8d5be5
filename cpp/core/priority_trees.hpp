// Sum- and min-trees of priority^alpha over the experience ring's slots, for
// prioritized sampling.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

namespace grl {


// A sum-tree (double) and a min-tree (float) of priority^alpha over the ring's
// slots, as implicit binary heaps (node 1 the root, leaf i at node P + i).
// Writers (producers, priority updates, alpha changes) hold `mutex`; samplers
// descend without it, reading nodes with relaxed atomics: a descent that meets
// a half-updated path lands on some leaf, which the sampler checks (positive,
// its slot resident) and otherwise draws again.
class PriorityTrees {
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

}  // namespace grl
