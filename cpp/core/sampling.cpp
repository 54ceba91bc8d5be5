// Sampling resident experiences: uniform or prioritized, with importance
// weights and n-step returns.
#include <algorithm>
#include <cmath>
#include <mutex>

#include "batch_assembly.hpp"
#include "buffer_internal.hpp"
#include "experience_buffer.hpp"
#include "priority_trees.hpp"
#include "rng.hpp"

namespace grl {

using namespace buffer_internal;

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

}  // namespace grl
