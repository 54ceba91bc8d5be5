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

// A map key field (tag, length, name).
std::string map_key(const std::string& name) { return delimited(0x0A, name.size()) + name; }
// A Features map entry up to its payload of `payload_len` bytes:
// entry{key=1: name, value=2: Feature{<kind>: List{value=1: payload}}}.
std::string feature_prefix(const std::string& name, ListKind kind, size_t payload_len) {
  const std::string values = delimited(0x0A, payload_len);
  const std::string list = delimited(static_cast<uint8_t>(static_cast<uint8_t>(kind) << 3 | 2),
                                     values.size() + payload_len);
  const std::string key = map_key(name);
  const size_t feature_len = list.size() + values.size() + payload_len;
  const std::string feature = delimited(0x12, feature_len);
  const size_t entry_len = key.size() + feature.size() + feature_len;
  return delimited(0x0A, entry_len) + key + feature + list + values;
}
// feature_prefix of an int64 list for an encoded `key`, written at `out`
// (nullptr: only measured); returns its size.
size_t put_int64_prefix(uint8_t* out, const std::string& key, size_t payload_len) {
  const size_t values_len = 1 + varint_size(payload_len) + payload_len;
  const size_t list_len = 1 + varint_size(values_len) + values_len;
  const size_t entry_len = key.size() + 1 + varint_size(list_len) + list_len;
  const size_t size = 1 + varint_size(entry_len) + entry_len - payload_len;
  if (out == nullptr) return size;
  *out++ = 0x0A;
  out = put_varint(out, entry_len);
  std::memcpy(out, key.data(), key.size());
  out += key.size();
  *out++ = 0x12;
  out = put_varint(out, list_len);
  *out++ = static_cast<uint8_t>(static_cast<uint8_t>(ListKind::kInt64) << 3 | 2);
  out = put_varint(out, values_len);
  *out++ = 0x0A;
  put_varint(out, payload_len);
  return size;
}
// Writes `count` little-endian values of a table row as varints; blocks of 8
// values below 128 (fog, empty tiles: most of a board) are stored a byte each
// without a branch per value.
template <typename Value>
uint8_t* put_varints(uint8_t* out, const uint8_t* row, size_t count) {
  size_t v = 0;
  for (; v + 8 <= count; v += 8) {
    Value block[8];
    std::memcpy(block, row + v * sizeof(Value), sizeof block);
    Value any = 0;
    for (const Value value : block) any |= value;
    if (any < 0x80) {
      for (int k = 0; k < 8; ++k) out[k] = static_cast<uint8_t>(block[k]);
      out += 8;
    } else {
      for (const Value value : block) out = put_varint(out, value);
    }
  }
  for (; v < count; ++v) {
    Value value;
    std::memcpy(&value, row + v * sizeof(Value), sizeof(Value));
    out = put_varint(out, value);
  }
  return out;
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
    if (feature.value_bytes != 0) {
      if ((feature.value_bytes != 4 && feature.value_bytes != 8) || feature.kind != ListKind::kInt64 ||
          feature.row_bytes % feature.value_bytes != 0) {
        throw std::invalid_argument("feature " + feature.name +
                                    ": values are 4 or 8 bytes, a whole number a row, in an int64 list");
      }
      const size_t most = feature.row_bytes / feature.value_bytes * (feature.value_bytes == 4 ? 5 : 10);
      max_varint_bytes_ += put_int64_prefix(nullptr, map_key(feature.name), most) + most;
    }
    row_prefixes_.push_back(feature.value_bytes ? std::string() : feature_prefix(feature.name, feature.kind, feature.row_bytes));
    row_keys_.push_back(map_key(feature.name));
    row_bytes_.push_back(feature.row_bytes);
    value_bytes_.push_back(feature.value_bytes);
    if (feature.value_bytes == 0) row_block_bytes_ += row_prefixes_.back().size() + feature.row_bytes;
  }
}

size_t ExampleEncoder::max_record_bytes() const {
  size_t features = row_block_bytes_ + max_varint_bytes_;
  for (const auto& by_length : varint_prefixes_) features += by_length.back().size() + 10;
  return 12 + 1 + varint_size(features) + features + 4;
}

size_t ExampleEncoder::encode(size_t n, const int64_t* const* varint_columns, const RowSource* rows, uint8_t* out,
                              int64_t* lengths) const {
  const size_t varints = varint_prefixes_.size();
  const size_t row_count = row_prefixes_.size();
  // The value rows' varints of the record being written, encoded once before
  // its lengths are known: each feature's at its own offset of `encoded`.
  std::vector<size_t> payloads(row_count), offsets(row_count);
  size_t encoded_bytes = 0;
  for (size_t f = 0; f < row_count; ++f) {
    offsets[f] = encoded_bytes;
    if (value_bytes_[f] != 0) encoded_bytes += row_bytes_[f] / value_bytes_[f] * 10;
  }
  std::vector<uint8_t> encoded(encoded_bytes);
  uint8_t* const begin = out;
  for (size_t i = 0; i < n; ++i) {
    size_t features_len = row_block_bytes_;
    for (size_t f = 0; f < varints; ++f) {
      const size_t k = varint_size(static_cast<uint64_t>(varint_columns[f][i]));
      features_len += varint_prefixes_[f][k - 1].size() + k;
    }
    for (size_t f = 0; f < row_count; ++f) {
      if (value_bytes_[f] == 0) continue;
      const size_t row = rows[f].index != nullptr ? static_cast<size_t>(rows[f].index[i]) : i;
      const uint8_t* values = rows[f].table + row * row_bytes_[f];
      const size_t count = row_bytes_[f] / value_bytes_[f];
      uint8_t* const target = encoded.data() + offsets[f];
      const uint8_t* end = value_bytes_[f] == 4 ? put_varints<uint32_t>(target, values, count)
                                                : put_varints<uint64_t>(target, values, count);
      payloads[f] = static_cast<size_t>(end - target);
      features_len += put_int64_prefix(nullptr, row_keys_[f], payloads[f]) + payloads[f];
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
      const size_t row = rows[f].index != nullptr ? static_cast<size_t>(rows[f].index[i]) : i;
      const uint8_t* source = rows[f].table + row * row_bytes_[f];
      if (value_bytes_[f] != 0) {
        p += put_int64_prefix(p, row_keys_[f], payloads[f]);
        std::memcpy(p, encoded.data() + offsets[f], payloads[f]);
        p += payloads[f];
        continue;
      }
      const std::string& prefix = row_prefixes_[f];
      std::memcpy(p, prefix.data(), prefix.size());
      p += prefix.size();
      std::memcpy(p, source, row_bytes_[f]);
      p += row_bytes_[f];
    }
    store_le32(p, mask_crc(crc32c(record + 12, data_len)));
    out = p + 4;
    lengths[i] = static_cast<int64_t>(out - record);
  }
  return static_cast<size_t>(out - begin);
}

}  // namespace grl::tfrecord
