// Starting a file range's write-back to disk early, so that a later fsync
// waits for less, without dropping the range from the page cache.
#pragma once

#include <cstdint>

namespace grl {

// Asks the kernel to start writing [offset, offset + length) of the open file
// `fd` to disk and returns at once (Linux: sync_file_range with
// SYNC_FILE_RANGE_WRITE; the pages stay cached). False where the platform has
// no such call or it failed: the range is then written back as usual.
bool start_write_back(int fd, int64_t offset, int64_t length);

}  // namespace grl
