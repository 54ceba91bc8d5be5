#include "lzstring.hpp"

#include <algorithm>
#include <vector>

namespace grl {

namespace {

uint32_t reverse_bits(uint32_t v) {
  v = (v >> 1 & 0x55555555u) | (v & 0x55555555u) << 1;
  v = (v >> 2 & 0x33333333u) | (v & 0x33333333u) << 2;
  v = (v >> 4 & 0x0F0F0F0Fu) | (v & 0x0F0F0F0Fu) << 4;
  v = (v >> 8 & 0x00FF00FFu) | (v & 0x00FF00FFu) << 8;
  return v >> 16 | v << 16;
}

// Reads values from the bit stream the 16-bit code units form (each unit most
// significant bit first), each value's bits least significant first; 1 to 32
// bits a value.
class BitReader {
 public:
  BitReader(const uint8_t* bytes, size_t units) : bytes_(bytes), units_(units) {}

  uint32_t read(int bits) {
    while (held_ < bits && next_ < units_) {
      const uint64_t unit = static_cast<uint64_t>(bytes_[2 * next_]) << 8 | bytes_[2 * next_ + 1];
      buffer_ |= unit << (48 - held_);
      held_ += 16;
      ++next_;
    }
    if (held_ < bits) throw LzStringError("compressed replay is truncated");
    const auto in_stream_order = static_cast<uint32_t>(buffer_ >> (64 - bits));
    buffer_ <<= bits;
    held_ -= bits;
    return reverse_bits(in_stream_order) >> (32 - bits);
  }

 private:
  const uint8_t* bytes_;
  size_t units_;
  size_t next_ = 0;
  uint64_t buffer_ = 0;  // the next stream bits, from the most significant down
  int held_ = 0;
};

// A dictionary entry: always a stretch of the output already written, so the
// dictionary costs two integers per entry however long its strings grow.
struct Span {
  size_t offset, length;
};

void append_utf8(uint32_t c, std::string& out) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | c >> 6);
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | c >> 12);
    out += static_cast<char>(0x80 | (c >> 6 & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | c >> 18);
    out += static_cast<char>(0x80 | (c >> 12 & 0x3F));
    out += static_cast<char>(0x80 | (c >> 6 & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// UTF-16 (as JavaScript strings hold it) to UTF-8; a lone surrogate becomes U+FFFD.
std::string to_utf8(const std::vector<char16_t>& units) {
  std::string out;
  out.reserve(units.size());
  for (size_t i = 0; i < units.size(); ++i) {
    const uint32_t c = units[i];
    if (c >= 0xD800 && c < 0xDC00 && i + 1 < units.size() && units[i + 1] >= 0xDC00 &&
        units[i + 1] < 0xE000) {
      append_utf8(0x10000 + ((c - 0xD800) << 10) + (units[++i] - 0xDC00), out);
    } else if (c >= 0xD800 && c < 0xE000) {
      append_utf8(0xFFFD, out);
    } else {
      append_utf8(c, out);
    }
  }
  return out;
}

}  // namespace

std::string lzstring_decompress_uint8(const uint8_t* bytes, size_t size, size_t max_output) {
  if (size == 0) throw LzStringError("compressed replay is empty");
  if (size % 2) throw LzStringError(".gior data has an odd number of bytes");
  BitReader bits(bytes, size / 2);
  std::vector<char16_t> out;
  const auto grow = [&](size_t length) {
    if (out.size() + length > max_output) {
      throw LzStringError("compressed replay decompresses to more than " +
                          std::to_string(max_output) + " characters");
    }
    out.resize(out.size() + length);
  };
  // Codes 0, 1 and 2 are the literal and end markers; entries start at 3.
  std::vector<Span> dictionary(3, Span{0, 0});
  const uint32_t header = bits.read(2);
  if (header == 2) return {};
  if (header > 2) throw LzStringError("compressed replay has a bad header");
  grow(1);
  out[0] = static_cast<char16_t>(bits.read(header == 0 ? 8 : 16));
  dictionary.push_back({0, 1});
  Span w{0, 1};
  uint32_t enlarge_in = 4;
  int num_bits = 3;
  const auto count_entry = [&] {
    if (--enlarge_in == 0) {
      // 2^32 entries would take more output than any limit lets through.
      if (num_bits == 32) throw LzStringError("compressed replay is damaged (dictionary too large)");
      enlarge_in = 1u << num_bits;
      ++num_bits;
    }
  };
  while (true) {
    uint32_t code = bits.read(num_bits);
    Span entry;
    if (code == 2) return to_utf8(out);
    if (code < 2) {
      // A literal: it is written out at once, so its entry is the output's next character.
      const auto literal = static_cast<char16_t>(bits.read(code == 0 ? 8 : 16));
      entry = {out.size(), 1};
      grow(1);
      out[entry.offset] = literal;
      dictionary.push_back(entry);
      count_entry();
    } else if (code < dictionary.size()) {
      const Span source = dictionary[code];
      entry = {out.size(), source.length};
      grow(source.length);
      std::copy_n(out.begin() + source.offset, source.length, out.begin() + entry.offset);
    } else if (code == dictionary.size()) {
      entry = {out.size(), w.length + 1};
      grow(w.length + 1);
      std::copy_n(out.begin() + w.offset, w.length, out.begin() + entry.offset);
      out[entry.offset + w.length] = out[w.offset];
    } else {
      throw LzStringError("compressed replay is damaged (bad dictionary reference)");
    }
    // w followed by the first character of entry, which the output holds right after w.
    dictionary.push_back({w.offset, w.length + 1});
    count_entry();
    w = entry;
  }
}

}  // namespace grl
