// TFRecord framing: the CRC masking and the framed Example records the
// encoder writes.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tfrecord.hpp"

namespace tf = grl::tfrecord;

namespace {

uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

TEST_CASE("the mask rotates right by 15 and adds the delta") {
  const uint32_t crc = 0x12345678u;
  CHECK(tf::mask_crc(crc) == ((crc >> 15 | crc << 17) + 0xa282ead8u));
}

TEST_CASE("framed records carry their length, data and checksums") {
  const tf::ExampleEncoder encoder({"tick"}, {{"state", tf::ListKind::kBytes, 3}});
  const int64_t ticks[2] = {5, 300};
  const int64_t* varints[1] = {ticks};
  const uint8_t table[6] = {1, 2, 3, 4, 5, 6};
  const int32_t index[2] = {1, 0};
  const tf::RowSource rows[1] = {{table, 2, index}};
  std::vector<uint8_t> out(2 * encoder.max_record_bytes());
  int64_t lengths[2];
  const size_t written = encoder.encode(2, varints, rows, out.data(), lengths);
  CHECK(written == static_cast<size_t>(lengths[0] + lengths[1]));
  size_t at = 0;
  for (int r = 0; r < 2; ++r) {
    uint64_t length;
    std::memcpy(&length, out.data() + at, 8);
    CHECK(length + 16 == static_cast<uint64_t>(lengths[r]));
    CHECK(load32(out.data() + at + 8) == tf::mask_crc(grl::crc32c(out.data() + at, 8)));
    const uint8_t* data = out.data() + at + 12;
    CHECK(load32(data + length) == tf::mask_crc(grl::crc32c(data, length)));
    // The row's payload appears in the record: row 1 first, then row 0.
    const std::string record(reinterpret_cast<const char*>(data), length);
    CHECK(record.find(std::string(reinterpret_cast<const char*>(table + 3 * index[r]), 3)) != std::string::npos);
    CHECK(record.find("tick") != std::string::npos);
    at += lengths[r];
  }
}
