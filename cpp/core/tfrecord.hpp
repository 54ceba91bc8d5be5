// TFRecord files of tf.train.Example records, built in bulk: an Example encoder
// that frames many records into one buffer, with their CRC32C (crc32c.hpp).
//
// A record is `uint64 length, masked CRC32C of the length, data, masked CRC32C
// of the data`, all little-endian; the data is a serialized Example whose
// features are either one varint (an int64 list of one value), a fixed-size
// payload per record taken from a row of a table, or a row of a table of
// unsigned values written as an int64 list (packed varints, so its size varies),
// or a compact view or packed action mask made from state tables as the record
// is written (compact_observation.hpp), so no array of views exists.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "compact_observation.hpp"
#include "crc32c.hpp"

namespace grl {
class ThreadPool;
}

namespace grl::tfrecord {

// The TFRecord masking of a CRC: rotate right by 15, add 0xa282ead8.
uint32_t mask_crc(uint32_t crc);

// The companion index of records of these lengths, back to back from offset 0:
// a line "offset length" a record. std::invalid_argument names a length that
// is negative or takes the offsets past int64.
std::string index_text(const int64_t* lengths, size_t n);

// The varints of n tiles' view values (army << kViewArmyShift | code, armies
// >= 0) written at `out`, which has room for 10 bytes a tile and 16 more;
// returns the end. put_view_values uses the CPU's byte shuffles where it has
// them, and equals put_view_values_portable byte for byte.
uint8_t* put_view_values(uint8_t* out, const uint8_t* codes, const int32_t* armies, size_t n);
uint8_t* put_view_values_portable(uint8_t* out, const uint8_t* codes, const int32_t* armies, size_t n);

// What a fixed-size payload holds, as the Feature's oneof field.
enum class ListKind : uint8_t {
  kBytes = 1,  // bytes_list with one value: the payload
  kFloat = 2,  // float_list, packed: the payload is little-endian float32s
  kInt64 = 3,  // int64_list, packed: the payload is the values' varints
};

// Where a row feature's payload comes from: a row of a table (RowSource), or
// the acting player's compact view of the record's state or next state
// (view values army << kViewArmyShift | tile code, obstacles on, as an int64
// list) or the packed action mask of its state (bytes), made from ViewTables.
enum class RowContent : uint8_t { kTable, kStateView, kNextStateView, kStateMask };

struct RowFeature {
  std::string name;
  ListKind kind;
  size_t row_bytes;  // bytes of a table row: the payload of every record, unless value_bytes
  // 4 or 8: the row holds little-endian unsigned values of that size, written
  // as the varints of an int64 list (kind kInt64); 0: the row is the payload.
  size_t value_bytes = 0;
  // Not kTable: made from ViewTables; row_bytes is then 8 bytes a tile for
  // views (value_bytes 8, kInt64), packed_mask_bytes(tiles) for masks (kBytes).
  RowContent content = RowContent::kTable;
};

// Where the payloads of a row feature come from: record i uses row index[i] of
// `table` (row i when index is null). The memory belongs to the caller.
struct RowSource {
  const uint8_t* table;
  size_t table_rows;
  const int32_t* index;
};

// The states compact-view features are made from: record i takes the views of
// player[i] in states state_index[i] and next_state_index[i] of the table.
// Indices, players, tile kinds and armies (>= 0) are checked by the caller.
struct ViewTables {
  StateTable states;
  const int32_t* state_index;
  const int32_t* next_state_index;
  const int32_t* player;
};

// Encodes framed Example records; features appear in each record in the order
// given, varint features first. Holds only the constant parts of the encoding.
class ExampleEncoder {
 public:
  ExampleEncoder(std::vector<std::string> varint_names, std::vector<RowFeature> row_features);

  size_t varint_features() const { return varint_prefixes_.size(); }
  size_t row_features() const { return row_prefixes_.size(); }
  // The most bytes one framed record can take.
  size_t max_record_bytes() const;

  // Writes `n` framed records to `out` (room for n * max_record_bytes()) and
  // each record's framed length to `lengths`; returns the bytes written.
  // `varint_columns[f][i]` is feature f's value in record i (uint64 bit
  // patterns as int64); every index of `rows` must be below its table_rows
  // (the rows of view features are not read). `views` is required when a
  // feature is made from views. With a pool, ranges of records are encoded
  // in parallel and joined: the bytes are the same. `crc` (if not null) gets
  // the CRC32C of the bytes written, computed by each range while it is cached.
  size_t encode(size_t n, const int64_t* const* varint_columns, const RowSource* rows, uint8_t* out,
                int64_t* lengths, const ViewTables* views = nullptr, ThreadPool* pool = nullptr,
                uint32_t* crc = nullptr) const;

  // Whether some feature is made from ViewTables.
  bool uses_views() const;

 private:
  // std::invalid_argument unless `views` are given exactly when a feature is
  // made from them, with the features' boards.
  void check_views(const ViewTables* views) const;
  struct Part {
    const uint8_t* data;
    size_t size;
  };
  // Records [begin, end) written from `out`; returns the bytes written.
  // `plan`: the distinct views of all n records (with `views`).
  size_t encode_range(size_t begin, size_t end, const int64_t* const* varint_columns, const RowSource* rows,
                      const ViewTables* views, const ExperienceViews* plan, uint8_t* out, int64_t* lengths) const;
  // One framed record of the varint `values` and each row feature's payload;
  // `placed[f]` receives where value feature f's payload landed. Returns its end.
  uint8_t* put_record(const uint64_t* values, const Part* parts, uint8_t* out, uint8_t** placed) const;

  // Each varint feature's map entry up to its value, for a value of 1..10 bytes
  // (the prefixes differ only in the length bytes, so they have one size).
  std::vector<std::vector<std::string>> varint_prefixes_;
  std::vector<std::string> row_prefixes_;  // fixed payloads only
  std::vector<std::string> row_keys_;      // each row feature's map key, encoded
  std::vector<size_t> row_bytes_;
  std::vector<size_t> value_bytes_;
  std::vector<RowContent> contents_;
  size_t row_block_bytes_ = 0;     // every fixed row feature's prefix and payload
  size_t max_varint_bytes_ = 0;    // the most every value row feature can take
};

}  // namespace grl::tfrecord
