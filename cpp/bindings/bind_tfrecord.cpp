// TFRecord encoding: CRC32C and a bulk Example encoder that builds a block of
// framed records without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "arrays.hpp"
#include "tfrecord.hpp"

namespace py = pybind11;
using grl::bindings::as_array;
namespace tfr = grl::tfrecord;

namespace {

// A row feature of its Python kind: "bytes", "float", "int64" (the payload is
// its varints), or "uint32 values"/"uint64 values" (an int64 list of the
// row's values, written as varints).
tfr::RowFeature row_feature(const std::string& name, const std::string& kind, size_t row_bytes) {
  if (kind == "bytes") return {name, tfr::ListKind::kBytes, row_bytes};
  if (kind == "float") return {name, tfr::ListKind::kFloat, row_bytes};
  if (kind == "int64") return {name, tfr::ListKind::kInt64, row_bytes};
  if (kind == "uint32 values") return {name, tfr::ListKind::kInt64, row_bytes, 4};
  if (kind == "uint64 values") return {name, tfr::ListKind::kInt64, row_bytes, 8};
  throw py::value_error("feature " + name +
                        ": kind must be 'bytes', 'float', 'int64', 'uint32 values' or 'uint64 values', got '" +
                        kind + "'");
}

py::buffer_info contiguous_bytes(const py::buffer& data) {
  py::buffer_info info = data.request();
  if (info.size > 0 && !PyBuffer_IsContiguous(info.view(), 'C')) {
    throw py::value_error("crc32c: data must be a contiguous buffer");
  }
  return info;
}

// The encoder and the memory its last block was built in: the block stays
// alive while Python holds the array returned for it; a new block reuses the
// memory only when nobody does.
class BlockEncoder {
 public:
  BlockEncoder(std::vector<std::string> varint_names, const std::vector<std::tuple<std::string, std::string, size_t>>& rows)
      : encoder_(std::move(varint_names), row_features(rows)) {}

  py::tuple encode(const py::sequence& varint_columns, const py::sequence& row_sources) {
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
      if (array && array.dtype().kind() == 'u' && array.dtype().itemsize() == 8) {
        column = array.attr("view")("int64");  // uint64 values by their bit pattern
      }
      const std::string name = "varint column " + std::to_string(f);
      columns.push_back(as_array<int64_t>(column, name.c_str(), n));
      if (columns.back().ndim() != 1) throw py::value_error(name + ": expected a one-dimensional array");
      n = columns.back().size();
      column_data.push_back(columns.back().data());
    }
    std::vector<py::array> tables;
    std::vector<grl::bindings::InputArray<int32_t>> indexes;
    std::vector<tfr::RowSource> sources;
    for (size_t f = 0; f < encoder_.row_features(); ++f) {
      const auto source = row_sources[f].cast<py::sequence>();
      const std::string name = "row source " + std::to_string(f);
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
    const size_t bound = static_cast<size_t>(n) * encoder_.max_record_bytes();
    if (!block_ || block_.use_count() > 1 || capacity_ < bound) {
      capacity_ = std::max(bound, capacity_);
      block_ = std::shared_ptr<uint8_t[]>(new uint8_t[capacity_]);
    }
    py::array_t<int64_t> lengths(n);
    size_t used = 0;
    {
      py::gil_scoped_release release;
      used = encoder_.encode(static_cast<size_t>(n), column_data.data(), sources.data(), block_.get(),
                             lengths.mutable_data());
    }
    auto* keep = new std::shared_ptr<uint8_t[]>(block_);
    py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<uint8_t[]>*>(p); });
    py::array_t<uint8_t> records(static_cast<py::ssize_t>(used), block_.get(), owner);
    return py::make_tuple(records, lengths);
  }

  size_t max_record_bytes() const { return encoder_.max_record_bytes(); }

 private:
  std::vector<tfr::RowFeature> row_features(const std::vector<std::tuple<std::string, std::string, size_t>>& rows) {
    std::vector<tfr::RowFeature> out;
    for (const auto& [name, kind, size] : rows) {
      out.push_back(row_feature(name, kind, size));
      row_bytes_.push_back(size);
    }
    return out;
  }

  std::vector<size_t> row_bytes_;  // before encoder_: filled while it is built
  tfr::ExampleEncoder encoder_;
  std::shared_ptr<uint8_t[]> block_;
  size_t capacity_ = 0;
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
      .def(py::init<std::vector<std::string>, const std::vector<std::tuple<std::string, std::string, size_t>>&>(),
           py::arg("varint_features"), py::arg("row_features"),
           "varint_features: names; row_features: (name, kind, table row bytes) triples, kind 'bytes', "
           "'float', 'int64' (the row is the payload: for 'int64' its packed varints), or 'uint32 values' / "
           "'uint64 values' (the row's little-endian values, written as an int64 list).")
      .def("encode", &BlockEncoder::encode, py::arg("varint_columns"), py::arg("row_sources"),
           "(records, lengths): the framed records of one block as a uint8 array and each record's length. "
           "varint_columns: one int64 or uint64 array per varint feature; row_sources: one (table, index) pair "
           "per row feature, record i taking row index[i] of the table (row i when index is None).")
      .def_property_readonly("max_record_bytes", &BlockEncoder::max_record_bytes);
}
