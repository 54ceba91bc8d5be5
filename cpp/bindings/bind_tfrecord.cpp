// TFRecord encoding: CRC32C and a bulk Example encoder that builds a block of
// framed records without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "arrays.hpp"
#include "compact_observation.hpp"
#include "tfrecord.hpp"
#include "thread_pool.hpp"
#include "write_back.hpp"

namespace py = pybind11;
using grl::bindings::as_array;
using grl::bindings::InputArray;
namespace tfr = grl::tfrecord;

namespace {

// A row feature of its Python kind: "bytes", "float", "int64" (the payload is
// its varints), "uint32 values"/"uint64 values" (an int64 list of the row's
// values, written as varints), each with its table row's bytes as `size`; or
// "state views"/"next state views"/"state masks", made from the views
// argument of encode, with the board's tiles as `size`.
tfr::RowFeature row_feature(const std::string& name, const std::string& kind, size_t size) {
  if (kind == "bytes") return {name, tfr::ListKind::kBytes, size};
  if (kind == "float") return {name, tfr::ListKind::kFloat, size};
  if (kind == "int64") return {name, tfr::ListKind::kInt64, size};
  if (kind == "uint32 values") return {name, tfr::ListKind::kInt64, size, 4};
  if (kind == "uint64 values") return {name, tfr::ListKind::kInt64, size, 8};
  const bool view_kind = kind == "state views" || kind == "next state views" || kind == "state masks";
  if (view_kind && (size == 0 || size > static_cast<size_t>(grl::kMaxBoardSide) * grl::kMaxBoardSide)) {
    throw py::value_error("feature " + name + ": a board of 1.." +
                          std::to_string(grl::kMaxBoardSide * grl::kMaxBoardSide) + " tiles, got " +
                          std::to_string(size));
  }
  if (kind == "state views") return {name, tfr::ListKind::kInt64, 8 * size, 8, tfr::RowContent::kStateView};
  if (kind == "next state views") {
    return {name, tfr::ListKind::kInt64, 8 * size, 8, tfr::RowContent::kNextStateView};
  }
  if (kind == "state masks") {
    return {name, tfr::ListKind::kBytes, grl::packed_mask_bytes(size), 0, tfr::RowContent::kStateMask};
  }
  throw py::value_error("feature " + name +
                        ": kind must be 'bytes', 'float', 'int64', 'uint32 values', 'uint64 values', "
                        "'state views', 'next state views' or 'state masks', got '" +
                        kind + "'");
}

// The state tables and rows compact-view features are made from, checked:
// (state_kind, state_owner, state_army, state_index, next_state_index, player_id).
struct ViewArrays {
  InputArray<uint8_t> kind;
  InputArray<int16_t> owner;
  InputArray<int32_t> army, state_index, next_state_index, player;
  tfr::ViewTables tables{};

  ViewArrays(const py::sequence& views, size_t tiles, py::ssize_t rows) {
    if (py::len(views) != 6) {
      throw py::value_error(
          "views: expected (state_kind, state_owner, state_army, state_index, next_state_index, player_id)");
    }
    kind = as_array<uint8_t>(views[0], "state_kind");
    if (kind.ndim() != 3) throw py::value_error("state_kind: expected an array of shape (states, height, width)");
    const auto [height, width] = grl::bindings::board_shape(kind, 1, "state_kind");
    if (static_cast<size_t>(height) * width != tiles) {
      throw py::value_error("state_kind: boards of " + std::to_string(height) + "x" + std::to_string(width) +
                            ", the view features were made for " + std::to_string(tiles) + " tiles");
    }
    grl::bindings::check_tile_kinds(kind, "state_kind");
    owner = as_array<int16_t>(views[1], "state_owner", kind.size());
    army = as_array<int32_t>(views[2], "state_army", kind.size());
    const int32_t* armies = army.data();
    const int32_t* const armies_end = armies + army.size();
    int32_t bits = 0;  // negative when any army is; a branch-free reduction vectorizes
    for (const int32_t* a = armies; a != armies_end; ++a) bits |= *a;
    if (bits < 0) {
      throw py::value_error("state_army: armies must be >= 0, got " +
                            std::to_string(*std::find_if(armies, armies_end, [](int32_t a) { return a < 0; })));
    }
    state_index = checked_index(views[3], "state_index", rows);
    next_state_index = checked_index(views[4], "next_state_index", rows);
    player = as_array<int32_t>(views[5], "player_id", rows);
    for (py::ssize_t r = 0; r < rows; ++r) {
      if (player.data()[r] < 0 || player.data()[r] >= grl::kMaxPlayers) {
        throw py::value_error("player_id: row " + std::to_string(r) + ": " + std::to_string(player.data()[r]) +
                              " outside 0.." + std::to_string(grl::kMaxPlayers - 1));
      }
    }
    tables = {{height, width, kind.data(), owner.data(), army.data()},
              state_index.data(),
              next_state_index.data(),
              player.data()};
  }

 private:
  InputArray<int32_t> checked_index(py::handle value, const char* name, py::ssize_t rows) const {
    auto index = as_array<int32_t>(value, name, rows);
    const py::ssize_t states = kind.shape(0);
    for (py::ssize_t r = 0; r < rows; ++r) {
      if (index.data()[r] < 0 || index.data()[r] >= states) {
        throw py::value_error(std::string(name) + ": row " + std::to_string(r) + " refers to state " +
                              std::to_string(index.data()[r]) + " of " + std::to_string(states));
      }
    }
    return index;
  }
};

py::buffer_info contiguous_bytes(const py::buffer& data) {
  py::buffer_info info = data.request();
  if (info.size > 0 && !PyBuffer_IsContiguous(info.view(), 'C')) {
    throw py::value_error("crc32c: data must be a contiguous buffer");
  }
  return info;
}

// The encoder and the memory its blocks are built in: a block stays alive while
// Python holds the array returned for it, and a new block reuses the memory of
// one nobody holds. Two are kept: the shard's writer holds blocks until it
// drains them to the file, and a block encoded while the last is still held
// then takes the other one instead of fresh pages.
class BlockEncoder {
 public:
  BlockEncoder(std::vector<std::string> varint_names, const std::vector<std::tuple<std::string, std::string, size_t>>& rows,
               int num_threads)
      : encoder_(std::move(varint_names), row_features(rows)) {
    if (num_threads < 0) {
      throw py::value_error("num_threads: must be 0 (every core) or more, got " + std::to_string(num_threads));
    }
    const int threads = num_threads > 0 ? num_threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (threads > 1) pool_ = std::make_unique<grl::ThreadPool>(threads);
  }

  py::tuple encode(const py::sequence& varint_columns, const py::sequence& row_sources, const py::object& views) {
    // The block memory and the pool serve one call at a time.
    const std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) throw py::value_error("encode: this encoder is encoding on another thread");
    if (static_cast<size_t>(py::len(varint_columns)) != encoder_.varint_features()) {
      throw py::value_error("encode: expected " + std::to_string(encoder_.varint_features()) +
                            " varint columns, got " + std::to_string(py::len(varint_columns)));
    }
    if (static_cast<size_t>(py::len(row_sources)) != encoder_.row_features()) {
      throw py::value_error("encode: expected " + std::to_string(encoder_.row_features()) + " row sources, got " +
                            std::to_string(py::len(row_sources)));
    }
    std::vector<grl::bindings::InputArray<int64_t>> columns;
    std::vector<const int64_t*> column_data;
    py::ssize_t n = -1;
    for (size_t f = 0; f < encoder_.varint_features(); ++f) {
      py::object column = varint_columns[f];
      const auto array = py::array::ensure(column);
      const std::string name = "varint column " + std::to_string(f);
      if (array && array.dtype().kind() == 'u' && array.dtype().itemsize() == 8) {
        column = array.attr("view")("int64");  // uint64 values by their bit pattern
      }
      const bool fits = array && std::string("biu").find(array.dtype().kind()) != std::string::npos &&
                        array.dtype().itemsize() <= 8;
      if (fits) {
        // Booleans and integers of up to 64 bits always fit: converted without a range check.
        columns.push_back(InputArray<int64_t>::ensure(column));
        if (n >= 0 && columns.back().size() != n) {
          throw py::value_error(name + ": expected " + std::to_string(n) + " elements, got " +
                                std::to_string(columns.back().size()));
        }
      } else {
        columns.push_back(as_array<int64_t>(column, name.c_str(), n));
      }
      if (columns.back().ndim() != 1) throw py::value_error(name + ": expected a one-dimensional array");
      n = columns.back().size();
      column_data.push_back(columns.back().data());
    }
    std::vector<py::array> tables;
    std::vector<grl::bindings::InputArray<int32_t>> indexes;
    std::vector<tfr::RowSource> sources;
    for (size_t f = 0; f < encoder_.row_features(); ++f) {
      const std::string name = "row source " + std::to_string(f);
      if (view_tiles_[f] != 0) {
        if (!row_sources[f].is_none()) throw py::value_error(name + ": made from the views, expected None");
        sources.push_back({nullptr, 0, nullptr});
        continue;
      }
      const auto source = row_sources[f].cast<py::sequence>();
      if (py::len(source) != 2) throw py::value_error(name + ": expected a (table, index or None) pair");
      auto table = py::array::ensure(source[0], py::array::c_style);
      if (!table || table.ndim() < 1) throw py::value_error(name + ": the table must be an array of rows");
      const auto table_rows = static_cast<size_t>(table.shape(0));
      // Divided, not multiplied: a product can wrap around (an empty table of 2^40 rows "holds" them).
      const auto table_bytes = static_cast<size_t>(table.nbytes());
      if (table_rows == 0 || table_bytes % table_rows != 0 || table_bytes / table_rows != row_bytes_[f]) {
        throw py::value_error(name + ": table rows must hold " + std::to_string(row_bytes_[f]) + " bytes each");
      }
      const int32_t* index = nullptr;
      if (source[1].is_none()) {
        if (n >= 0 && static_cast<size_t>(n) != table_rows) {
          throw py::value_error(name + ": without an index the table needs one row per record");
        }
        n = static_cast<py::ssize_t>(table_rows);
      } else {
        auto idx = as_array<int32_t>(source[1], (name + " index").c_str(), n);
        n = idx.size();
        for (py::ssize_t i = 0; i < n; ++i) {
          if (idx.data()[i] < 0 || static_cast<size_t>(idx.data()[i]) >= table_rows) {
            throw py::value_error(name + ": index " + std::to_string(idx.data()[i]) + " outside the table's " +
                                  std::to_string(table_rows) + " rows");
          }
        }
        index = idx.data();
        indexes.push_back(std::move(idx));
      }
      sources.push_back({static_cast<const uint8_t*>(table.data()), table_rows, index});
      tables.push_back(std::move(table));
    }
    if (n < 0) n = 0;
    std::unique_ptr<ViewArrays> view_arrays;
    if (views.is_none() == encoder_.uses_views()) {
      throw py::value_error(encoder_.uses_views() ? "views: the view features need the state tables"
                                                  : "views: no feature is made from views, expected None");
    }
    if (!views.is_none()) {
      const size_t tiles = *std::max_element(view_tiles_.begin(), view_tiles_.end());
      view_arrays = std::make_unique<ViewArrays>(views.cast<py::sequence>(), tiles, n);
    }
    const size_t bound = static_cast<size_t>(n) * encoder_.max_record_bytes();
    const std::shared_ptr<uint8_t[]> block = free_block(bound);
    py::array_t<int64_t> lengths(n);
    size_t used = 0;
    uint32_t crc = 0;
    {
      py::gil_scoped_release release;
      used = encoder_.encode(static_cast<size_t>(n), column_data.data(), sources.data(), block.get(),
                             lengths.mutable_data(), view_arrays ? &view_arrays->tables : nullptr, pool_.get(),
                             &crc);
    }
    auto* keep = new std::shared_ptr<uint8_t[]>(block);
    py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<uint8_t[]>*>(p); });
    py::array_t<uint8_t> records(static_cast<py::ssize_t>(used), block.get(), owner);
    return py::make_tuple(records, lengths, crc);
  }

  size_t max_record_bytes() const { return encoder_.max_record_bytes(); }

 private:
  std::vector<tfr::RowFeature> row_features(const std::vector<std::tuple<std::string, std::string, size_t>>& rows) {
    std::vector<tfr::RowFeature> out;
    for (const auto& [name, kind, size] : rows) {
      out.push_back(row_feature(name, kind, size));
      const bool made = out.back().content != tfr::RowContent::kTable;
      row_bytes_.push_back(made ? 0 : size);
      view_tiles_.push_back(made ? size : 0);
    }
    // All view features describe one board.
    for (size_t tiles : view_tiles_) {
      if (tiles != 0 && tiles != *std::max_element(view_tiles_.begin(), view_tiles_.end())) {
        throw py::value_error("row_features: the view features must have one number of tiles");
      }
    }
    return out;
  }

  // Before encoder_: filled while it is built.
  std::vector<size_t> row_bytes_;   // table row bytes of table features
  std::vector<size_t> view_tiles_;  // tiles of the board of features made from views, else 0
  tfr::ExampleEncoder encoder_;
  std::unique_ptr<grl::ThreadPool> pool_;
  std::mutex busy_;
  struct Block {
    std::shared_ptr<uint8_t[]> memory;
    size_t capacity = 0;
  };
  static constexpr size_t kKeptBlocks = 2;
  std::vector<Block> blocks_;  // the most recently used last

  // A block of at least `bytes` that nobody holds: a kept one, or a new one
  // that replaces the least recently used.
  std::shared_ptr<uint8_t[]> free_block(size_t bytes) {
    auto it = std::find_if(blocks_.begin(), blocks_.end(),
                           [&](const Block& b) { return b.memory.use_count() == 1 && b.capacity >= bytes; });
    Block block;
    if (it != blocks_.end()) {
      block = std::move(*it);
      blocks_.erase(it);
    } else {
      if (blocks_.size() == kKeptBlocks) blocks_.erase(blocks_.begin());
      block = {std::shared_ptr<uint8_t[]>(new uint8_t[bytes]), bytes};
    }
    blocks_.push_back(block);
    return block.memory;
  }
};

}  // namespace

void bind_tfrecord(py::module_& m) {
  m.def(
      "crc32c",
      [](const py::buffer& data, uint32_t value) {
        const py::buffer_info info = contiguous_bytes(data);
        const auto size = static_cast<size_t>(info.size * info.itemsize);
        py::gil_scoped_release release;
        return grl::crc32c(static_cast<const uint8_t*>(info.ptr), size, value);
      },
      py::arg("data"), py::arg("value") = 0,
      "CRC32C (Castagnoli) of a contiguous buffer, continuing from value; hardware accelerated when the CPU "
      "has SSE4.2.");
  m.def("crc32c_combine", &grl::crc32c_combine, py::arg("first"), py::arg("second"), py::arg("second_size"),
        "The CRC32C of A followed by B, from A's CRC (first) and B's (second, of second_size bytes).");
  m.def(
      "tfrecord_index",
      [](py::handle lengths) {
        const auto array = as_array<int64_t>(lengths, "lengths");
        if (array.ndim() != 1) throw py::value_error("lengths: expected a one-dimensional array");
        std::string text;
        {
          py::gil_scoped_release release;
          text = grl::tfrecord::index_text(array.data(), static_cast<size_t>(array.size()));
        }
        return py::bytes(text);
      },
      py::arg("lengths"),
      "The companion index of a TFRecord file whose records have these lengths: a line \"offset length\" a "
      "record, as bytes.");
  m.def(
      "start_write_back",
      [](int fd, int64_t offset, int64_t length) {
        if (fd < 0 || offset < 0 || length < 0) {
          throw py::value_error("start_write_back: fd, offset and length must be >= 0, got " + std::to_string(fd) +
                                ", " + std::to_string(offset) + ", " + std::to_string(length));
        }
        py::gil_scoped_release release;
        return grl::start_write_back(fd, offset, length);
      },
      py::arg("fd"), py::arg("offset"), py::arg("length"),
      "Starts writing a range of an open file to disk without waiting for it and without dropping it from the "
      "page cache (Linux sync_file_range); False where the platform lacks it or it failed.");
  m.def(
      "crc32c_portable",
      [](const py::buffer& data, uint32_t value) {
        const py::buffer_info info = contiguous_bytes(data);
        return grl::crc32c_portable(static_cast<const uint8_t*>(info.ptr),
                                    static_cast<size_t>(info.size * info.itemsize), value);
      },
      py::arg("data"), py::arg("value") = 0, "The table-driven CRC32C used on CPUs without SSE4.2.");
  py::class_<BlockEncoder>(m, "TFRecordEncoder",
                           "Frames blocks of tf.train.Example records: varint features (an int64 list of one "
                           "value) and row features (a fixed-size payload per record from a table row).")
      .def(py::init<std::vector<std::string>, const std::vector<std::tuple<std::string, std::string, size_t>>&,
                    int>(),
           py::arg("varint_features"), py::arg("row_features"), py::arg("num_threads") = 1,
           "varint_features: names; row_features: (name, kind, size) triples, kind 'bytes', 'float', 'int64' "
           "(the table row is the payload: for 'int64' its packed varints), 'uint32 values' / 'uint64 values' "
           "(the row's little-endian values, written as an int64 list), size the table row's bytes; or kind "
           "'state views' / 'next state views' (the acting player's compact view values, army << "
           "VIEW_ARMY_SHIFT | tile code, obstacles on, as an int64 list) / 'state masks' (the packed action "
           "mask of the state, bytes), made from encode's views, size the board's tiles. num_threads: threads "
           "a block is encoded on (0: every core); the bytes do not depend on it.")
      .def("encode", &BlockEncoder::encode, py::arg("varint_columns"), py::arg("row_sources"),
           py::arg("views") = py::none(),
           "(records, lengths, crc): the framed records of one block as a uint8 array, each record's length "
           "and the block's CRC32C. "
           "varint_columns: one int64 or uint64 array per varint feature; row_sources: one (table, index) pair "
           "per row feature, record i taking row index[i] of the table (row i when index is None), None for a "
           "feature made from views; views: (state_kind, state_owner, state_army, state_index, "
           "next_state_index, player_id) of the records when a feature is made from them, else None.")
      .def_property_readonly("max_record_bytes", &BlockEncoder::max_record_bytes);
}
