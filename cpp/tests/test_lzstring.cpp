// LZString decompression of generals.io replays: literals, back references and
// the output bound.
#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "lzstring.hpp"

namespace {

// Packs (value, width) pairs as LZString writes them: each value least
// significant bit first, into 16-bit units filled from their top bit, big-endian.
std::vector<uint8_t> lzstring_bits(const std::vector<std::pair<int, int>>& values) {
  std::vector<int> bits;
  for (const auto& [value, width] : values) {
    for (int i = 0; i < width; ++i) bits.push_back(value >> i & 1);
  }
  while (bits.size() % 16) bits.push_back(0);
  std::vector<uint8_t> out;
  for (size_t i = 0; i < bits.size(); i += 16) {
    int unit = 0;
    for (int b = 0; b < 16; ++b) unit = unit << 1 | bits[i + b];
    out.push_back(static_cast<uint8_t>(unit >> 8));
    out.push_back(static_cast<uint8_t>(unit & 0xFF));
  }
  return out;
}

// A literal 'a', then `codes` references to the entry being defined (w + w[0]):
// outputs of 1, 2, 3, ... characters.
std::vector<uint8_t> self_repeating_stream(int codes) {
  std::vector<std::pair<int, int>> values = {{0, 2}, {'a', 8}};
  int size = 4, enlarge_in = 4, num_bits = 3;
  for (int k = 0; k < codes; ++k) {
    values.push_back({size, num_bits});
    size += 1;
    if (--enlarge_in == 0) {
      enlarge_in = 1 << num_bits;
      num_bits += 1;
    }
  }
  values.push_back({2, num_bits});
  return lzstring_bits(values);
}

std::string decompress(const std::vector<uint8_t>& bytes, size_t max_output = grl::kLzStringMaxOutput) {
  return grl::lzstring_decompress_uint8(bytes.data(), bytes.size(), max_output);
}

}  // namespace

TEST_CASE("a literal and the end mark") {
  CHECK(decompress(lzstring_bits({{0, 2}, {'a', 8}, {2, 3}})) == "a");
  CHECK(decompress(lzstring_bits({{1, 2}, {0x263A, 16}, {2, 3}})) == "\u263A");  // a 16-bit literal, as UTF-8
}

TEST_CASE("back references repeat earlier output") {
  CHECK(decompress(self_repeating_stream(3)) == std::string(1 + 2 + 3 + 4, 'a'));
}

TEST_CASE("the output is bounded") {
  const auto stream = self_repeating_stream(100);  // 5151 characters
  CHECK(decompress(stream).size() == 5151);
  CHECK_THROWS_WITH_AS(decompress(stream, 1000), doctest::Contains("more than 1000 characters"), grl::LzStringError);
}
