// Decoding raw batches into observation tensors and action masks, in bulk.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "batch.hpp"
#include "experience_buffer.hpp"
#include "game.hpp"
#include "thread_pool.hpp"

namespace grl {

namespace {

// compute_open_directions for the tiles a move can start from (owned, with at
// least 2 armies): the only ones encode_action_mask reads, and a fraction of
// the board. Other entries are left as they are.
void movable_open_directions(const StateView& s, uint8_t* open) {
  for (int t = 0; t < s.height * s.width; ++t) {
    if (s.owner[t] >= 0 && s.army[t] >= 2) open[t] = open_directions_of(s.kind, s.height, s.width, t);
  }
}


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

}  // namespace grl
