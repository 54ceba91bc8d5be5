// CRC32C (Castagnoli), as TFRecord framing and the storage checksums use it:
// the CPU's CRC32 instruction when it has one (SSE4.2), a table otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace grl {

// CRC32C of `size` bytes, continuing from `crc` (0 to start).
uint32_t crc32c(const uint8_t* data, size_t size, uint32_t crc = 0);
// The CRC32C of A followed by B from the CRC32Cs of A and B (`second`, of
// `second_size` bytes): A's shifted over B's length, xor B's.
uint32_t crc32c_combine(uint32_t first, uint32_t second, size_t second_size);
// The table-driven CRC32C, whatever the CPU (crc32c uses it without SSE4.2).
uint32_t crc32c_portable(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace grl
