#include "write_back.hpp"

#if defined(__linux__)
#include <fcntl.h>
#endif

namespace grl {

bool start_write_back(int fd, int64_t offset, int64_t length) {
#if defined(__linux__)
  return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE) == 0;
#else
  static_cast<void>(fd);
  static_cast<void>(offset);
  static_cast<void>(length);
  return false;
#endif
}

}  // namespace grl
