// Cursors: every experience in order, each read waiting for the first one.
#include <algorithm>
#include <mutex>

#include "batch_assembly.hpp"
#include "buffer_internal.hpp"
#include "experience_buffer.hpp"

namespace grl {

using namespace buffer_internal;

size_t Cursor::tiles() const { return static_cast<size_t>(buffer_.tiles_); }

uint64_t Cursor::lag() const {
  const uint64_t head = buffer_.head();
  const uint64_t pos = position_.load();
  return head > pos ? head - pos : 0;
}

Cursor::~Cursor() {
  closed_.store(true);
  buffer_.notify_producers();
}

void Cursor::close() {
  closed_.store(true);
  buffer_.min_open_cursor();
  buffer_.notify_producers();
  buffer_.notify_readers();
}

template <typename Sink>
void Cursor::read(size_t max_items, double timeout_s, uint64_t end, Sink& sink, RecordColumns& out) {
  ExperienceBuffer::StateScratch scratch;
  auto load_state = [this, &scratch](uint64_t id, uint8_t* kind, int16_t* owner, int32_t* army) {
    buffer_.prefetch_state(id + 1);  // a read's next new state is most often the next one stored
    return buffer_.load_state(id, scratch, kind, owner, army);
  };
  const auto deadline = deadline_after(timeout_s);
  uint64_t pos = position_.load();
  uint64_t missed = 0;
  ExperienceRecord record;
  size_t since_publish = 0;
  while (sink.size() < max_items && pos < end) {
    // Overwrite policy: everything below the oldest is (being) replaced. Not
    // under block, where the head counts reservations of producers that wait
    // for this cursor: a record there is missed only when found replaced.
    if (buffer_.policy_ == FullPolicy::kOverwrite) {
      const uint64_t oldest = buffer_.oldest();
      if (pos < oldest) {
        missed += std::min(oldest, end) - pos;
        pos = std::min(oldest, end);
        if (pos == end) break;
      }
    }
    const int status = buffer_.load_record(pos, record);
    if (status == 0) {  // not written yet: wait for producers
      position_.store(pos);
      // Waits only for the first matching experience: what is there is returned at once.
      if (sink.size() > 0 || closed() || Clock::now() >= deadline) break;
      buffer_.readers_waiting_.fetch_add(1);
      {
        std::unique_lock<std::mutex> lock(buffer_.wait_mutex_);
        if (buffer_.load_record(pos, record) == 0) {
          buffer_.readers_cv_.wait_until(lock, std::min(deadline, Clock::now() + kMaxWaitSlice));
        }
      }
      buffer_.readers_waiting_.fetch_sub(1);
      continue;
    }
    if (status < 0 || (record.flags & kMissingFlag)) {
      missed += 1;
    } else if (filter_.matches(record) && !sink.add(pos, record, load_state)) {
      missed += 1;  // its state was overwritten before it could be read
    }
    pos += 1;
    if (++since_publish == 256) {
      since_publish = 0;
      position_.store(pos);
      if (buffer_.producers_waiting_.load() > 0) buffer_.notify_producers();
    }
  }
  position_.store(pos);
  if (buffer_.producers_waiting_.load() > 0) buffer_.notify_producers();
  missed_.fetch_add(missed);
  out.missed = missed;
  out.next_sequence = pos;
}

void Cursor::read_raw(size_t max_items, double timeout_s, RawBatch& out, bool with_states, uint64_t end) {
  std::lock_guard<std::mutex> guard(read_mutex_);
  RawSink sink(out, buffer_.height_, buffer_.width_, std::min<size_t>(max_items, 1 << 20), with_states);
  read(max_items, timeout_s, end, sink, out);
}

void Cursor::read_views(size_t max_items, double timeout_s, uint64_t end, bool obstacles, CompactRowsOut out,
                        uint8_t* byte_armies, ViewBatch& batch) {
  std::lock_guard<std::mutex> guard(read_mutex_);
  ViewSink sink(batch, buffer_.height_, buffer_.width_, std::min<size_t>(max_items, 1 << 20), obstacles, out,
                byte_armies);
  read(max_items, timeout_s, end, sink, batch.rows);
}

void Cursor::read_decoded(size_t max_items, double timeout_s, DecodedBatch& out) {
  thread_local RawBatch raw;  // its memory serves the next read
  read_raw(max_items, timeout_s, raw);
  buffer_.decode(raw, out);
}

std::shared_ptr<Cursor> ExperienceBuffer::open_cursor(Cursor::Start start, uint64_t at, CursorFilter filter) {
  uint64_t position = at;
  if (start == Cursor::kOldest) position = oldest();
  if (start == Cursor::kNewest) position = head_.load();
  std::shared_ptr<Cursor> cursor(new Cursor(*this, position, std::move(filter)));
  std::lock_guard<std::mutex> lock(cursors_mutex_);
  cursors_.push_back(cursor);
  if (policy_ == FullPolicy::kBlock) {
    uint64_t cached = min_cursor_cache_.load();
    while (position < cached && !min_cursor_cache_.compare_exchange_weak(cached, position)) {
    }
  }
  return cursor;
}

}  // namespace grl
