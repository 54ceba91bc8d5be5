// Built-in policies, computed in bulk for every game of a VecEnv from its
// current state. Each writes actions[(i * players) + p] for the players whose
// entry in `act_for` is set and leaves the other entries untouched.
#pragma once

#include <cstdint>

#include "vec_env.hpp"

namespace grl {

// A uniformly random legal full move (a pass when there is none). `call` makes
// each call's draws differ; results do not depend on the number of threads.
void random_policy(VecEnv& env, uint64_t seed, uint64_t call, const uint8_t* act_for, int32_t* actions);

// Expands greedily, gathers its largest army and marches it, by shortest
// path around mountains, at the enemy general when it sees it, else at the
// nearest enemy tile it sees, else at the nearest tile it does not own.
void heuristic_policy(VecEnv& env, const uint8_t* act_for, int32_t* actions);

}  // namespace grl
