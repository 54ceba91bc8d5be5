// Sampling: the priority trees (sums, minimum, proportional descent) and the
// buffer's uniform, prioritized and n-step samples.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "buffer_support.hpp"
#include "experience_buffer.hpp"
#include "priority_trees.hpp"

using grl::testing::kBufferSide;
using grl::testing::record_game;

TEST_CASE("the trees hold priority^alpha: sum, minimum and descent") {
  grl::PriorityTrees trees(5, 0.5);
  std::lock_guard<std::mutex> lock(trees.mutex);
  const float priorities[5] = {4, 0, 16, 1, 9};
  for (uint64_t slot = 0; slot < 5; ++slot) trees.set_leaf(slot, priorities[slot]);
  trees.update_range(0, 4);
  CHECK(trees.total() == doctest::Approx(2 + 0 + 4 + 1 + 3));
  CHECK(trees.min_leaf() == doctest::Approx(1.0));  // zero priorities are never the minimum
  CHECK(trees.find(0.0) == 0);
  CHECK(trees.find(1.99) == 0);
  CHECK(trees.find(2.0) == 2);  // slot 1 holds no mass
  CHECK(trees.find(6.5) == 3);
  CHECK(trees.find(9.5) == 4);
  const double masses[3] = {0.5, 2.5, 7.5};
  uint64_t slots[3];
  trees.find_many(masses, 3, slots);
  CHECK((slots[0] == 0 && slots[1] == 2 && slots[2] == 4));
  trees.set_alpha(1.0);
  CHECK(trees.total() == doctest::Approx(4 + 16 + 1 + 9));
}

TEST_CASE("uniform samples are resident experiences with their boards") {
  grl::ExperienceBuffer buffer(kBufferSide, kBufferSide, 64, grl::FullPolicy::kOverwrite);
  record_game(buffer, 7, 10);
  grl::RawBatch sample;
  buffer.sample_raw(50, 1, sample);
  REQUIRE(sample.size() == 50);
  for (size_t i = 0; i < sample.size(); ++i) {
    CHECK(sample.sequence[i] < 20);
    CHECK(sample.tick[i] == static_cast<int32_t>(sample.sequence[i] / 2));
    CHECK(sample.state_army[sample.state_index[i] * sample.tiles()] == sample.tick[i]);
  }
}

TEST_CASE("prioritized samples follow the priorities and weigh by them") {
  grl::ExperienceBuffer buffer(kBufferSide, kBufferSide, 64, grl::FullPolicy::kOverwrite);
  record_game(buffer, 7, 10);
  std::vector<uint64_t> sequences(20);
  std::vector<float> priorities(20, 0.0f);
  for (uint64_t s = 0; s < 20; ++s) sequences[s] = s;
  priorities[3] = 1.0f;
  priorities[11] = 3.0f;
  CHECK(buffer.update_priorities(sequences.data(), priorities.data(), 20) == 0);
  grl::SampleOptions options;
  options.prioritized = true;
  options.alpha = 1.0;
  options.beta = 1.0;
  grl::RawBatch sample;
  buffer.sample_raw(400, 2, sample, options);
  REQUIRE(sample.size() == 400);
  int elevens = 0;
  for (size_t i = 0; i < sample.size(); ++i) {
    REQUIRE((sample.sequence[i] == 3 || sample.sequence[i] == 11));
    elevens += sample.sequence[i] == 11;
    // (P_min / P_i)^beta: 1 for the rarest, 1/3 for the other
    CHECK(sample.weight[i] == doctest::Approx(sample.sequence[i] == 3 ? 1.0 : 1.0 / 3));
  }
  CHECK(std::abs(elevens - 300) < 45);  // 3/4 of the draws, within about 5 sigma
}

TEST_CASE("n-step returns sum discounted rewards of the same player and game") {
  grl::ExperienceBuffer buffer(kBufferSide, kBufferSide, 64, grl::FullPolicy::kOverwrite);
  record_game(buffer, 7, 4);  // rewards 0, 1, 2, 3 by tick; the last terminated
  grl::SampleOptions options;
  options.n_step = 3;
  options.gamma = 0.5;
  grl::RawBatch sample;
  buffer.sample_raw(100, 3, sample, options);
  REQUIRE(sample.size() == 100);
  for (size_t i = 0; i < sample.size(); ++i) {
    const int tick = sample.tick[i];
    const int length = std::min(3, 4 - tick);
    double expected = 0, discount = 1;
    for (int k = 0; k < length; ++k, discount *= 0.5) expected += discount * (tick + k);
    CHECK(sample.nstep_length[i] == length);
    CHECK(sample.nstep_reward[i] == doctest::Approx(expected));
    CHECK(sample.nstep_done[i] == (tick + length == 4));
    CHECK(sample.state_army[sample.nstep_next_state_index[i] * sample.tiles()] == tick + length);
  }
}
