#include "thread_pool.hpp"

#include <algorithm>

namespace grl {

namespace {

void range_of(int part, int parts, int count, int& begin, int& end) {
  begin = static_cast<int>(static_cast<int64_t>(count) * part / parts);
  end = static_cast<int>(static_cast<int64_t>(count) * (part + 1) / parts);
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  try {
    for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
  } catch (...) {
    stop_workers();  // the destructor does not run: joinable threads left behind would terminate the process
    throw;
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  while (true) {
    generation_.wait(seen);
    seen = generation_.load();
    if (stop_.load()) return;
    if (index < job_parts_) {
      int begin, end;
      range_of(index, job_parts_, job_count_, begin, end);
      (*job_)(begin, end);
    }
    if (pending_.fetch_sub(1) == 1) pending_.notify_one();
  }
}

void ThreadPool::parallel_for(int count, const std::function<void(int, int)>& fn) {
  const int parts = std::min(num_threads_, count);
  if (parts <= 1) {
    if (count > 0) fn(0, count);
    return;
  }
  job_ = &fn;
  job_count_ = count;
  job_parts_ = parts;
  pending_.store(num_threads_ - 1);
  generation_.fetch_add(1);
  generation_.notify_all();
  int begin, end;
  range_of(0, parts, count, begin, end);
  fn(begin, end);
  for (int left = pending_.load(); left != 0; left = pending_.load()) pending_.wait(left);
  job_ = nullptr;
}

}  // namespace grl
