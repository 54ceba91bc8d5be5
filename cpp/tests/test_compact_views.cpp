// The compact stream's distinct views of experiences: each (state, player)
// once, the rows' state views first, and each next state pointing at the view
// that has it.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "compact_observation.hpp"

namespace {

TEST_CASE("each next state is the view of the row that has it, or a view of its own after the rows") {
  // Two games interleaved, two players each: rows (state, player), next = state + 1 of the same game.
  const std::vector<int32_t> state{0, 0, 2, 2, 1, 1, 3, 3};
  const std::vector<int32_t> next{1, 1, 3, 3, 4, 4, 5, 5};
  const std::vector<int32_t> player{0, 1, 0, 1, 0, 1, 0, 1};
  const grl::ExperienceViews plan = grl::plan_experience_views(state.data(), next.data(), player.data(), 8);
  CHECK(plan.next_state_view == std::vector<int32_t>{4, 5, 6, 7, 8, 9, 10, 11});
  CHECK(plan.view_state == std::vector<int32_t>{0, 0, 2, 2, 1, 1, 3, 3, 4, 4, 5, 5});
  CHECK(plan.view_player == std::vector<int32_t>{0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1});
}

TEST_CASE("a next state seen for another player only, or twice, gets one view") {
  const std::vector<int32_t> state{0, 1, 1};
  const std::vector<int32_t> next{1, 2, 2};
  const std::vector<int32_t> player{1, 0, 0};  // state 1 is a row's only for player 0
  const grl::ExperienceViews plan = grl::plan_experience_views(state.data(), next.data(), player.data(), 3);
  CHECK(plan.next_state_view == std::vector<int32_t>{3, 4, 4});
  CHECK(plan.view_state == std::vector<int32_t>{0, 1, 1, 1, 2});
  CHECK(plan.view_player == std::vector<int32_t>{1, 0, 0, 1, 0});
}

TEST_CASE("no rows, no views") {
  const grl::ExperienceViews plan = grl::plan_experience_views(nullptr, nullptr, nullptr, 0);
  CHECK(plan.next_state_view.empty());
  CHECK(plan.view_state.empty());
}

}  // namespace
