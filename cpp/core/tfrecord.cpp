#include "tfrecord.hpp"

#include <bit>
#include <cstring>
#include <stdexcept>

static_assert(std::endian::native == std::endian::little, "TFRecord encoding assumes a little-endian host");

namespace grl::tfrecord {

namespace {

constexpr uint32_t kMaskDelta = 0xA282EAD8;

size_t varint_size(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

uint8_t* put_varint(uint8_t* out, uint64_t value) {
  while (value >= 0x80) {
    *out++ = static_cast<uint8_t>(value | 0x80);
    value >>= 7;
  }
  *out++ = static_cast<uint8_t>(value);
  return out;
}

void append_varint(std::string& out, uint64_t value) {
  uint8_t bytes[10];
  const uint8_t* end = put_varint(bytes, value);
  out.append(reinterpret_cast<const char*>(bytes), static_cast<size_t>(end - bytes));
}

// A length-delimited field's tag and length.
std::string delimited(uint8_t tag, size_t length) {
  std::string out(1, static_cast<char>(tag));
  append_varint(out, length);
  return out;
}

// A Features map entry up to its payload of `payload_len` bytes:
// entry{key=1: name, value=2: Feature{<kind>: List{value=1: payload}}}.
std::string feature_prefix(const std::string& name, ListKind kind, size_t payload_len) {
  const std::string values = delimited(0x0A, payload_len);
  const std::string list = delimited(static_cast<uint8_t>(static_cast<uint8_t>(kind) << 3 | 2),
                                     values.size() + payload_len);
  const std::string key = delimited(0x0A, name.size()) + name;
  const size_t feature_len = list.size() + values.size() + payload_len;
  const std::string feature = delimited(0x12, feature_len);
  const size_t entry_len = key.size() + feature.size() + feature_len;
  return delimited(0x0A, entry_len) + key + feature + list + values;
}

void store_le32(uint8_t* out, uint32_t value) { std::memcpy(out, &value, 4); }

}  // namespace

uint32_t mask_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }

ExampleEncoder::ExampleEncoder(std::vector<std::string> varint_names, std::vector<RowFeature> row_features) {
  for (const auto& name : varint_names) {
    if (name.empty() || name.size() > 100) throw std::invalid_argument("feature names must have 1..100 bytes");
    auto& by_length = varint_prefixes_.emplace_back();
    for (size_t k = 1; k <= 10; ++k) by_length.push_back(feature_prefix(name, ListKind::kInt64, k));
  }
  for (const auto& feature : row_features) {
    if (feature.name.empty()) throw std::invalid_argument("feature names must not be empty");
    if (feature.kind != ListKind::kBytes && feature.kind != ListKind::kFloat && feature.kind != ListKind::kInt64) {
      throw std::invalid_argument("feature " + feature.name + ": unknown list kind");
    }
    row_prefixes_.push_back(feature_prefix(feature.name, feature.kind, feature.row_bytes));
    row_bytes_.push_back(feature.row_bytes);
    row_block_bytes_ += row_prefixes_.back().size() + feature.row_bytes;
  }
}

size_t ExampleEncoder::max_record_bytes() const {
  size_t features = row_block_bytes_;
  for (const auto& by_length : varint_prefixes_) features += by_length.back().size() + 10;
  return 12 + 1 + varint_size(features) + features + 4;
}

size_t ExampleEncoder::encode(size_t n, const int64_t* const* varint_columns, const RowSource* rows, uint8_t* out,
                              int64_t* lengths) const {
  const size_t varints = varint_prefixes_.size();
  const size_t row_count = row_prefixes_.size();
  uint8_t* const begin = out;
  for (size_t i = 0; i < n; ++i) {
    size_t features_len = row_block_bytes_;
    for (size_t f = 0; f < varints; ++f) {
      const size_t k = varint_size(static_cast<uint64_t>(varint_columns[f][i]));
      features_len += varint_prefixes_[f][k - 1].size() + k;
    }
    const uint64_t data_len = 1 + varint_size(features_len) + features_len;
    uint8_t* const record = out;
    std::memcpy(record, &data_len, 8);
    store_le32(record + 8, mask_crc(crc32c(record, 8)));
    uint8_t* p = record + 12;
    *p++ = 0x0A;  // Example.features
    p = put_varint(p, features_len);
    for (size_t f = 0; f < varints; ++f) {
      const auto value = static_cast<uint64_t>(varint_columns[f][i]);
      const std::string& prefix = varint_prefixes_[f][varint_size(value) - 1];
      std::memcpy(p, prefix.data(), prefix.size());
      p = put_varint(p + prefix.size(), value);
    }
    for (size_t f = 0; f < row_count; ++f) {
      const std::string& prefix = row_prefixes_[f];
      std::memcpy(p, prefix.data(), prefix.size());
      p += prefix.size();
      const size_t row = rows[f].index != nullptr ? static_cast<size_t>(rows[f].index[i]) : i;
      std::memcpy(p, rows[f].table + row * row_bytes_[f], row_bytes_[f]);
      p += row_bytes_[f];
    }
    store_le32(p, mask_crc(crc32c(record + 12, data_len)));
    out = p + 4;
    lengths[i] = static_cast<int64_t>(out - record);
  }
  return static_cast<size_t>(out - begin);
}

}  // namespace grl::tfrecord
