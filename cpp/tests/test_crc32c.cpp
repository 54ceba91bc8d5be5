// CRC32C: the check value, continuation, and the CPU-instruction path (three
// interleaved streams joined by shift tables) equal to the table-driven one at
// every length around the block sizes, offset and starting value.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "crc32c.hpp"

namespace {

uint32_t crc_of(const std::string& text, uint32_t crc = 0) {
  return grl::crc32c(reinterpret_cast<const uint8_t*>(text.data()), text.size(), crc);
}

}  // namespace

TEST_CASE("crc32c of the standard check string, in one go and in parts") {
  CHECK(crc_of("123456789") == 0xE3069283u);  // the CRC-32C check value
  CHECK(crc_of("56789", crc_of("1234")) == 0xE3069283u);
  CHECK(crc_of("") == 0u);
  const std::string zeros(32, '\0');
  CHECK(crc_of(zeros) == 0x8A9136AAu);  // RFC 3720 B.4: 32 bytes of zeros
}

TEST_CASE("crc32c equals the table-driven CRC at every length, offset and starting value") {
  std::mt19937_64 random(7);
  std::vector<uint8_t> data(3 * 8192 * 3 + 64);
  for (auto& byte : data) byte = static_cast<uint8_t>(random());
  // Lengths around the three-stream block sizes (3 x 8192 and 3 x 256 bytes) and random ones.
  std::vector<size_t> lengths;
  for (size_t block : {size_t{0}, size_t{768}, size_t{3 * 8192}, size_t{2 * 3 * 8192}}) {
    for (size_t delta = 0; delta < 17; ++delta) {
      lengths.push_back(block + delta);
      if (block >= delta) lengths.push_back(block - delta);
    }
  }
  for (int i = 0; i < 300; ++i) lengths.push_back(random() % (data.size() - 64));
  for (const size_t length : lengths) {
    const size_t offset = random() % 64;
    const auto start = static_cast<uint32_t>(random());
    CAPTURE(length);
    CAPTURE(offset);
    CHECK(grl::crc32c(data.data() + offset, length, start) ==
          grl::crc32c_portable(data.data() + offset, length, start));
  }
}

TEST_CASE("crc32c continues across any split") {
  std::mt19937_64 random(11);
  std::vector<uint8_t> data(100000);
  for (auto& byte : data) byte = static_cast<uint8_t>(random());
  const uint32_t whole = grl::crc32c(data.data(), data.size());
  for (int i = 0; i < 50; ++i) {
    const size_t cut = random() % data.size();
    CHECK(grl::crc32c(data.data() + cut, data.size() - cut, grl::crc32c(data.data(), cut)) == whole);
  }
}

TEST_CASE("crc32c_combine joins the CRCs of two parts into the whole's") {
  std::mt19937_64 random(13);
  std::vector<uint8_t> data(70000);
  for (auto& byte : data) byte = static_cast<uint8_t>(random());
  for (const size_t cut : {size_t{0}, size_t{1}, size_t{8}, size_t{4097}, data.size() - 1, data.size()}) {
    CAPTURE(cut);
    const uint32_t first = grl::crc32c(data.data(), cut);
    const uint32_t second = grl::crc32c(data.data() + cut, data.size() - cut);
    CHECK(grl::crc32c_combine(first, second, data.size() - cut) == grl::crc32c(data.data(), data.size()));
  }
}
