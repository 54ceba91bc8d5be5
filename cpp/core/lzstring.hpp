// LZString decompression (the format of generals.io's .gior replays), linear in
// its input and output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace grl {

// The most UTF-16 code units one decompression may produce. Real replays
// decompress to well under a megabyte; a crafted stream can otherwise claim
// far more than it holds.
constexpr size_t kLzStringMaxOutput = size_t{64} << 20;

// A damaged or oversized compressed stream; the message says which.
class LzStringError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// LZString's `decompressFromUint8Array`: `bytes` pair big-endian into 16-bit
// code units, which are decompressed to UTF-16 text. Returns that text as UTF-8.
std::string lzstring_decompress_uint8(const uint8_t* bytes, size_t size,
                                      size_t max_output = kLzStringMaxOutput);

}  // namespace grl
