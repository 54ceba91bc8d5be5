// The crc32 instruction takes 3 cycles but starts one every cycle: a single
// stream of it leaves two thirds of the unit idle. So a block is split into
// three equal parts whose CRCs run interleaved, then joined: the CRC register
// of A followed by B is A's register shifted over B's length (multiplied by
// x^(8 * length) mod P) xor B's register from zero. The shift is four lookups
// in a table made at compile time for each part length.
#include "crc32c.hpp"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define GRL_CRC32C_SSE42 1
#endif

namespace grl {

namespace {

constexpr uint32_t kCastagnoli = 0x82F63B78;  // reflected polynomial: bit 31 is x^0

// Slicing-by-8 tables: kTables[k][b] is the CRC register of byte b followed by k zero bytes.
constexpr std::array<std::array<uint32_t, 256>, 8> make_tables() {
  std::array<std::array<uint32_t, 256>, 8> tables{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t crc = b;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? kCastagnoli : 0);
    tables[0][b] = crc;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (uint32_t b = 0; b < 256; ++b) tables[k][b] = (tables[k - 1][b] >> 8) ^ tables[0][tables[k - 1][b] & 0xFF];
  }
  return tables;
}
constexpr auto kTables = make_tables();

uint64_t load64(const uint8_t* p) {
  uint64_t word;
  std::memcpy(&word, p, 8);
  return word;
}

// a * b mod P, polynomials over GF(2) in the reflected form.
constexpr uint32_t multiply_mod_p(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int power = 0; power < 32; ++power) {
    if (a & (0x80000000u >> power)) product ^= b;  // a has x^power: add b * x^power
    b = (b & 1) ? (b >> 1) ^ kCastagnoli : b >> 1;  // b *= x
  }
  return product;
}

// x^(8 * bytes) mod P: what appending `bytes` zero bytes multiplies a register by.
constexpr uint32_t zero_bytes_factor(size_t bytes) {
  uint32_t factor = 0x80000000u, square = 0x80000000u >> 8;  // 1 and x^8
  for (; bytes; bytes >>= 1, square = multiply_mod_p(square, square)) {
    if (bytes & 1) factor = multiply_mod_p(factor, square);
  }
  return factor;
}

#ifdef GRL_CRC32C_SSE42

// Shifts a register over `kBytes` zero bytes, a byte of the register at a time.
template <size_t kBytes>
struct ZeroBytesShift {
  std::array<std::array<uint32_t, 256>, 4> table{};
  constexpr ZeroBytesShift() {
    const uint32_t factor = zero_bytes_factor(kBytes);
    for (int k = 0; k < 4; ++k) {
      for (uint32_t b = 0; b < 256; ++b) table[k][b] = multiply_mod_p(factor, b << (8 * k));
    }
  }
  uint32_t operator()(uint32_t crc) const {
    return table[0][crc & 0xFF] ^ table[1][(crc >> 8) & 0xFF] ^ table[2][(crc >> 16) & 0xFF] ^ table[3][crc >> 24];
  }
};

// Part lengths: long parts make joining rare, short ones take what is left of a
// buffer below three long parts (a multiple of 8 each, for the 64-bit instruction).
constexpr size_t kLongPart = 8192, kShortPart = 256;
constexpr ZeroBytesShift<kLongPart> kShiftLong;
constexpr ZeroBytesShift<kShortPart> kShiftShort;

// Consumes blocks of three `kPart`-byte parts while `size` holds one.
template <size_t kPart>
__attribute__((target("sse4.2"))) uint32_t three_streams(const uint8_t*& data, size_t& size, uint32_t crc,
                                                         const ZeroBytesShift<kPart>& shift) {
  for (; size >= 3 * kPart; size -= 3 * kPart) {
    uint64_t a = crc, b = 0, c = 0;
    for (const uint8_t* end = data + kPart; data < end; data += 8) {
      a = _mm_crc32_u64(a, load64(data));
      b = _mm_crc32_u64(b, load64(data + kPart));
      c = _mm_crc32_u64(c, load64(data + 2 * kPart));
    }
    data += 2 * kPart;
    crc = shift(shift(static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b)) ^ static_cast<uint32_t>(c);
  }
  return crc;
}

__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(const uint8_t* data, size_t size, uint32_t crc) {
  crc = ~crc;
  crc = three_streams(data, size, crc, kShiftLong);
  crc = three_streams(data, size, crc, kShiftShort);
  uint64_t state = crc;
  for (; size >= 8; size -= 8, data += 8) state = _mm_crc32_u64(state, load64(data));
  crc = static_cast<uint32_t>(state);
  for (; size > 0; --size, ++data) crc = _mm_crc32_u8(crc, *data);
  return ~crc;
}

using Crc32cFunction = uint32_t (*)(const uint8_t*, size_t, uint32_t);
const Crc32cFunction kBest = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2") ? &crc32c_sse42 : &crc32c_portable;
}();

#endif

}  // namespace

uint32_t crc32c_portable(const uint8_t* data, size_t size, uint32_t crc) {
  crc = ~crc;
  for (; size >= 8; size -= 8, data += 8) {
    const uint64_t word = load64(data) ^ crc;
    crc = kTables[7][word & 0xFF] ^ kTables[6][(word >> 8) & 0xFF] ^ kTables[5][(word >> 16) & 0xFF] ^
          kTables[4][(word >> 24) & 0xFF] ^ kTables[3][(word >> 32) & 0xFF] ^ kTables[2][(word >> 40) & 0xFF] ^
          kTables[1][(word >> 48) & 0xFF] ^ kTables[0][word >> 56];
  }
  for (; size > 0; --size, ++data) crc = (crc >> 8) ^ kTables[0][(crc ^ *data) & 0xFF];
  return ~crc;
}

uint32_t crc32c_combine(uint32_t first, uint32_t second, size_t second_size) {
  return multiply_mod_p(zero_bytes_factor(second_size), first) ^ second;
}

uint32_t crc32c(const uint8_t* data, size_t size, uint32_t crc) {
#ifdef GRL_CRC32C_SSE42
  return kBest(data, size, crc);
#else
  return crc32c_portable(data, size, crc);
#endif
}

}  // namespace grl
