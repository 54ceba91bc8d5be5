// The C++ tests' checks: CHECK counts passes and failures (from any thread)
// and prints each failure; check_summary prints the closing line and gives
// the exit code.
#pragma once

#include <atomic>
#include <cstdio>

inline std::atomic<int> g_passed{0};
inline std::atomic<int> g_failed{0};

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (cond) {                                                            \
      ++g_passed;                                                          \
    } else {                                                               \
      ++g_failed;                                                          \
      std::printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                      \
  } while (0)

inline int check_summary() {
  std::printf("%d passed, %d failed\n", g_passed.load(), g_failed.load());
  return g_failed.load() == 0 ? 0 : 1;
}
