// The Example encoder of tfrecord.hpp. Longer than 400 lines: the record layout,
// its framing and the compact views written into it are kept together.
#include "tfrecord.hpp"

#include <algorithm>
#include <atomic>
#include <array>
#include <bit>
#include <charconv>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>

#include "game.hpp"
#include "observation.hpp"
#include "thread_pool.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

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

// A value below 2^14 as its one or two varint bytes without a branch on which
// (seen boards mix both tile by tile); writes two bytes either way.
uint8_t* put_short_varint(uint8_t* out, uint32_t value) {
  const uint32_t two = value >= 0x80;
  out[0] = static_cast<uint8_t>(value | two << 7);
  out[1] = static_cast<uint8_t>(value >> 7);
  return out + 1 + two;
}

// Armies below this make view values of at most two varint bytes.
constexpr uint32_t kShortArmies = 1u << (14 - kViewArmyShift);

uint8_t* put_view_value(uint8_t* out, uint8_t code, int32_t army) {
  const auto wide = static_cast<uint32_t>(army);
  if (wide < kShortArmies) return put_short_varint(out, wide << kViewArmyShift | code);
  return put_varint(out, static_cast<uint64_t>(wide) << kViewArmyShift | code);
}

#if defined(__x86_64__) && defined(__GNUC__)

// For eight tiles' (low, high) varint byte pairs, side by side in 16 bytes: the
// byte shuffle that keeps every low byte and the high bytes of the values that
// need two, indexed by a bit a tile that says which do, and the bytes kept.
struct PairShuffles {
  std::array<std::array<uint8_t, 16>, 256> index{};
  std::array<uint8_t, 256> length{};
  constexpr PairShuffles() {
    for (unsigned two = 0; two < 256; ++two) {
      unsigned k = 0;
      for (unsigned t = 0; t < 8; ++t) {
        index[two][k++] = static_cast<uint8_t>(2 * t);
        if (two >> t & 1) index[two][k++] = static_cast<uint8_t>(2 * t + 1);
      }
      length[two] = static_cast<uint8_t>(k);
      for (; k < 16; ++k) index[two][k] = 0x80;  // a zero byte past the kept ones
    }
  }
};
constexpr PairShuffles kPairShuffles;

// Each value's varint byte pair: its low 7 bits, with the continuation bit where
// a second byte follows (`two`), then its next 7 bits.
__attribute__((target("sse4.1,ssse3"))) __m128i varint_pairs(__m128i values, __m128i two) {
  const __m128i low7 = _mm_set1_epi32(0x7F), continued = _mm_set1_epi32(0x80), high7 = _mm_set1_epi32(0x7F00);
  return _mm_or_si128(_mm_or_si128(_mm_and_si128(values, low7), _mm_and_si128(two, continued)),
                      _mm_and_si128(_mm_slli_epi32(values, 1), high7));
}

// put_view_values eight tiles at a time: the varint bytes of all eight made side
// by side and squeezed together with one byte shuffle. Writes up to 16 bytes.
__attribute__((target("sse4.1,ssse3"))) uint8_t* put_view_values_sse41(uint8_t* out, const uint8_t* codes,
                                                                            const int32_t* armies, size_t n) {
  const __m128i short_limit = _mm_set1_epi32(static_cast<int>(kShortArmies) - 1);
  const __m128i one_byte_limit = _mm_set1_epi32(0x7F);
  size_t t = 0;
  for (; t + 8 <= n; t += 8) {
    const __m128i a0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(armies + t));
    const __m128i a1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(armies + t + 4));
    // Armies are >= 0, so the signed comparison is the unsigned one.
    const __m128i wide = _mm_or_si128(_mm_cmpgt_epi32(a0, short_limit), _mm_cmpgt_epi32(a1, short_limit));
    if (!_mm_testz_si128(wide, wide)) {
      for (size_t k = t; k < t + 8; ++k) out = put_view_value(out, codes[k], armies[k]);
      continue;
    }
    const __m128i c = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + t));
    const __m128i v0 = _mm_or_si128(_mm_slli_epi32(a0, kViewArmyShift), _mm_cvtepu8_epi32(c));
    const __m128i v1 = _mm_or_si128(_mm_slli_epi32(a1, kViewArmyShift), _mm_cvtepu8_epi32(_mm_srli_si128(c, 4)));
    const __m128i two0 = _mm_cmpgt_epi32(v0, one_byte_limit), two1 = _mm_cmpgt_epi32(v1, one_byte_limit);
    const __m128i pairs = _mm_packus_epi32(varint_pairs(v0, two0), varint_pairs(v1, two1));
    const __m128i two_lanes = _mm_packs_epi16(_mm_packs_epi32(two0, two1), _mm_setzero_si128());
    const auto two = static_cast<unsigned>(_mm_movemask_epi8(two_lanes)) & 0xFF;
    const __m128i shuffle = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kPairShuffles.index[two].data()));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_shuffle_epi8(pairs, shuffle));
    out += kPairShuffles.length[two];
  }
  for (; t < n; ++t) out = put_view_value(out, codes[t], armies[t]);
  return out;
}

const bool kHasSse41 = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3");
}();

#endif

// What one thread needs to make a record's views: the board's codes, armies,
// scratch, packed mask and open directions (of the last state seen).
struct ViewScratch {
  std::vector<uint8_t> codes, scratch, mask, open;
  std::vector<int32_t> armies;
  int64_t open_state = -1;

  explicit ViewScratch(size_t tiles)
      : codes(tiles),
        scratch(tiles * kObservationScratchPerTile),
        mask(packed_mask_bytes(tiles)),
        open(tiles),
        armies(tiles) {}
};

}  // namespace

uint32_t mask_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }

uint8_t* put_view_values_portable(uint8_t* out, const uint8_t* codes, const int32_t* armies, size_t n) {
  for (size_t t = 0; t < n; ++t) out = put_view_value(out, codes[t], armies[t]);
  return out;
}

uint8_t* put_view_values(uint8_t* out, const uint8_t* codes, const int32_t* armies, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (kHasSse41) return put_view_values_sse41(out, codes, armies, n);
#endif
  return put_view_values_portable(out, codes, armies, n);
}

std::string index_text(const int64_t* lengths, size_t n) {
  constexpr size_t kLineBytes = 2 * 20 + 2;  // two int64s, a space and a newline
  std::string text(n * kLineBytes, '\0');
  char* p = text.data();
  char* const end = p + text.size();
  int64_t offset = 0;
  for (size_t i = 0; i < n; ++i) {
    if (lengths[i] < 0 || lengths[i] > std::numeric_limits<int64_t>::max() - offset) {
      throw std::invalid_argument("index: record " + std::to_string(i) + " has length " +
                                  std::to_string(lengths[i]) + ", outside 0.." +
                                  std::to_string(std::numeric_limits<int64_t>::max() - offset));
    }
    p = std::to_chars(p, end, offset).ptr;
    *p++ = ' ';
    p = std::to_chars(p, end, lengths[i]).ptr;
    *p++ = '\n';
    offset += lengths[i];
  }
  text.resize(static_cast<size_t>(p - text.data()));
  return text;
}

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
    const bool view = feature.content == RowContent::kStateView || feature.content == RowContent::kNextStateView;
    if (view && (feature.value_bytes != 8 || feature.kind != ListKind::kInt64)) {
      throw std::invalid_argument("feature " + feature.name + ": views are 8-byte values in an int64 list");
    }
    if (feature.content == RowContent::kStateMask && (feature.value_bytes != 0 || feature.kind != ListKind::kBytes)) {
      throw std::invalid_argument("feature " + feature.name + ": masks are bytes");
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
    contents_.push_back(feature.content);
    if (feature.value_bytes == 0) row_block_bytes_ += row_prefixes_.back().size() + feature.row_bytes;
  }
}

size_t ExampleEncoder::max_record_bytes() const {
  size_t features = row_block_bytes_ + max_varint_bytes_;
  for (const auto& by_length : varint_prefixes_) features += by_length.back().size() + 10;
  return 12 + 1 + varint_size(features) + features + 4;
}

void ExampleEncoder::check_views(const ViewTables* views) const {
  if (uses_views() && views == nullptr) throw std::invalid_argument("encode: view features need the state tables");
  if (views == nullptr) return;
  const size_t tiles = static_cast<size_t>(views->states.height) * views->states.width;
  for (size_t f = 0; f < contents_.size(); ++f) {
    const size_t wanted = contents_[f] == RowContent::kStateMask ? packed_mask_bytes(tiles)
                          : contents_[f] == RowContent::kTable   ? row_bytes_[f]
                                                                 : 8 * tiles;
    if (row_bytes_[f] != wanted) throw std::invalid_argument("encode: the state tables' boards are not the features'");
  }
}

bool ExampleEncoder::uses_views() const {
  return std::any_of(contents_.begin(), contents_.end(), [](RowContent c) { return c != RowContent::kTable; });
}

uint8_t* ExampleEncoder::put_record(const uint64_t* values, const Part* parts, uint8_t* out, uint8_t** placed) const {
  const size_t varints = varint_prefixes_.size();
  const size_t row_count = row_prefixes_.size();
  size_t features_len = row_block_bytes_;
  for (size_t f = 0; f < varints; ++f) {
    const size_t k = varint_size(values[f]);
    features_len += varint_prefixes_[f][k - 1].size() + k;
  }
  for (size_t f = 0; f < row_count; ++f) {
    if (value_bytes_[f] != 0) features_len += put_int64_prefix(nullptr, row_keys_[f], parts[f].size) + parts[f].size;
  }
  const uint64_t data_len = 1 + varint_size(features_len) + features_len;
  uint8_t* const record = out;
  std::memcpy(record, &data_len, 8);
  store_le32(record + 8, mask_crc(crc32c(record, 8)));
  uint8_t* p = record + 12;
  *p++ = 0x0A;  // Example.features
  p = put_varint(p, features_len);
  for (size_t f = 0; f < varints; ++f) {
    const std::string& prefix = varint_prefixes_[f][varint_size(values[f]) - 1];
    std::memcpy(p, prefix.data(), prefix.size());
    p = put_varint(p + prefix.size(), values[f]);
  }
  for (size_t f = 0; f < row_count; ++f) {
    if (value_bytes_[f] != 0) {
      p += put_int64_prefix(p, row_keys_[f], parts[f].size);
      placed[f] = p;
      std::memcpy(p, parts[f].data, parts[f].size);
      p += parts[f].size;
      continue;
    }
    const std::string& prefix = row_prefixes_[f];
    std::memcpy(p, prefix.data(), prefix.size());
    p += prefix.size();
    std::memcpy(p, parts[f].data, row_bytes_[f]);
    p += row_bytes_[f];
  }
  store_le32(p, mask_crc(crc32c(record + 12, data_len)));
  return p + 4;
}

size_t ExampleEncoder::encode_range(size_t begin, size_t end, const int64_t* const* varint_columns,
                                    const RowSource* rows, const ViewTables* views, const ExperienceViews* plan,
                                    uint8_t* out, int64_t* lengths) const {
  const size_t varints = varint_prefixes_.size();
  const size_t row_count = row_prefixes_.size();
  // The value rows' varints of the record being written, encoded before its
  // lengths are known: each feature's at its own offset of `encoded`.
  std::vector<size_t> offsets(row_count);
  size_t encoded_bytes = 0;
  for (size_t f = 0; f < row_count; ++f) {
    offsets[f] = encoded_bytes;
    if (value_bytes_[f] != 0) encoded_bytes += row_bytes_[f] / value_bytes_[f] * 10 + 16;  // put_view_values' room
  }
  std::vector<uint8_t> encoded(encoded_bytes);
  std::vector<uint64_t> values(varints);
  std::vector<Part> parts(row_count);
  std::vector<uint8_t*> placed(row_count);
  // Where each view of the plan was written in this range (a view another
  // range wrote is encoded again: that range may not have written it yet).
  std::vector<Part> written(plan ? plan->view_state.size() : 0, Part{nullptr, 0});
  std::vector<int32_t> new_views(row_count, -1);  // views this record writes first
  const size_t tiles = views ? static_cast<size_t>(views->states.height) * views->states.width : 0;
  std::unique_ptr<ViewScratch> scratch = views ? std::make_unique<ViewScratch>(tiles) : nullptr;
  uint8_t* const first = out;
  for (size_t i = begin; i < end; ++i) {
    for (size_t f = 0; f < varints; ++f) values[f] = static_cast<uint64_t>(varint_columns[f][i]);
    for (size_t f = 0; f < row_count; ++f) {
      new_views[f] = -1;
      if (contents_[f] == RowContent::kTable) {
        const size_t row = rows[f].index != nullptr ? static_cast<size_t>(rows[f].index[i]) : i;
        const uint8_t* source = rows[f].table + row * row_bytes_[f];
        if (value_bytes_[f] == 0) {
          parts[f] = {source, row_bytes_[f]};
          continue;
        }
        const size_t count = row_bytes_[f] / value_bytes_[f];
        uint8_t* const target = encoded.data() + offsets[f];
        const uint8_t* stop = value_bytes_[f] == 4 ? put_varints<uint32_t>(target, source, count)
                                                   : put_varints<uint64_t>(target, source, count);
        parts[f] = {target, static_cast<size_t>(stop - target)};
        continue;
      }
      const int32_t state =
          contents_[f] == RowContent::kNextStateView ? views->next_state_index[i] : views->state_index[i];
      const int32_t player = views->player[i];
      const size_t at = static_cast<size_t>(state) * tiles;
      const StateTable& table = views->states;
      StateView view{table.height, table.width, table.kind + at, table.owner + at, table.army + at};
      if (contents_[f] == RowContent::kStateMask) {
        if (scratch->open_state != state) {
          compute_open_directions(view.kind, view.height, view.width, scratch->open.data());
          scratch->open_state = state;
        }
        view.open_directions = scratch->open.data();
        encode_packed_action_mask(view, player, scratch->mask.data());
        parts[f] = {scratch->mask.data(), row_bytes_[f]};
        continue;
      }
      const int32_t id = contents_[f] == RowContent::kNextStateView ? plan->next_state_view[i]
                                                                    : static_cast<int32_t>(i);
      if (written[static_cast<size_t>(id)].data != nullptr) {
        parts[f] = written[static_cast<size_t>(id)];
        continue;
      }
      encode_compact(view, player, true, scratch->codes.data(), scratch->armies.data(), scratch->scratch.data());
      uint8_t* const target = encoded.data() + offsets[f];
      const uint8_t* stop = put_view_values(target, scratch->codes.data(), scratch->armies.data(), tiles);
      parts[f] = {target, static_cast<size_t>(stop - target)};
      new_views[f] = id;
    }
    uint8_t* const record = out;
    out = put_record(values.data(), parts.data(), out, placed.data());
    for (size_t f = 0; f < row_count; ++f) {
      if (new_views[f] >= 0) written[static_cast<size_t>(new_views[f])] = {placed[f], parts[f].size};
    }
    lengths[i] = static_cast<int64_t>(out - record);
  }
  return static_cast<size_t>(out - first);
}

size_t ExampleEncoder::encode(size_t n, const int64_t* const* varint_columns, const RowSource* rows, uint8_t* out,
                              int64_t* lengths, const ViewTables* views, ThreadPool* pool, uint32_t* crc) const {
  check_views(views);
  // Each distinct (state, player) view is encoded once and copied where it recurs.
  std::unique_ptr<ExperienceViews> plan;
  if (views != nullptr) {
    plan = std::make_unique<ExperienceViews>(
        plan_experience_views(views->state_index, views->next_state_index, views->player, n));
  }
  // Below this many records a second thread costs more than it saves.
  constexpr size_t kParallelRecords = 256;
  if (pool == nullptr || pool->size() < 2 || n < kParallelRecords) {
    const size_t used = encode_range(0, n, varint_columns, rows, views, plan.get(), out, lengths);
    if (crc != nullptr) *crc = crc32c(out, used);
    return used;
  }
  // Parts of the block, taken in turn by whichever thread is free (one slowed
  // by other work on its core then does fewer), each written
  // at its own bound (begin * max_record_bytes), then moved down behind those
  // before it.
  const size_t bound = max_record_bytes();
  const size_t part_records = std::max(kParallelRecords / 2, n / (4 * static_cast<size_t>(pool->size())));
  const size_t parts = (n + part_records - 1) / part_records;
  struct Range {
    size_t begin, bytes;
    uint32_t crc;
  };
  std::vector<Range> ranges(parts);
  std::atomic<size_t> next_part{0};
  pool->parallel_for(pool->size(), [&](int, int) {
    for (size_t part = next_part++; part < parts; part = next_part++) {
      const size_t first = part * part_records;
      const size_t last = std::min(n, first + part_records);
      uint8_t* const at = out + first * bound;
      const size_t bytes = encode_range(first, last, varint_columns, rows, views, plan.get(), at, lengths);
      ranges[part] = {first, bytes, crc != nullptr ? crc32c(at, bytes) : 0};
    }
  });
  size_t used = 0;
  for (const Range& range : ranges) {
    if (used != range.begin * bound) std::memmove(out + used, out + range.begin * bound, range.bytes);
    if (crc != nullptr) *crc = used == 0 ? range.crc : crc32c_combine(*crc, range.crc, range.bytes);
    used += range.bytes;
  }
  return used;
}

}  // namespace grl::tfrecord
