// CRC32C (Castagnoli), as TFRecord framing and the storage checksums use it:
// the CPU's CRC32 instruction when it has one (SSE4.2), a table otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace grl {

// CRC32C of `size` bytes, continuing from `crc` (0 to start).
uint32_t crc32c(const uint8_t* data, size_t size, uint32_t crc = 0);
// The table-driven CRC32C, whatever the CPU (crc32c uses it without SSE4.2).
uint32_t crc32c_portable(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace grl
