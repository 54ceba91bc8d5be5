// GRL_VECTOR_CLONES builds a function for AVX-512 (x86-64-v4) and AVX2 as well as the baseline; the
// loader picks the best for the CPU. Used on simple loops the compiler vectorizes.
// Not under ThreadSanitizer: it instruments the loader's resolver, which runs
// before the sanitizer's runtime is set up, and the program crashes at start.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define GRL_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define GRL_VECTOR_CLONES
#endif
