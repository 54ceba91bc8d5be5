// A fixed pool of worker threads that runs one range-partitioned job at a time.
// The calling thread takes the first share, so a pool of T threads uses T-1
// workers. Jobs are split into contiguous, deterministic ranges.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace grl {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return num_threads_; }

  // Calls fn(begin, end) over [0, count) split into at most size() ranges;
  // returns when every range is done.
  void parallel_for(int count, const std::function<void(int, int)>& fn);

 private:
  void worker(int index);
  void stop_workers();

  int num_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  int job_count_ = 0;
  int job_parts_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace grl
