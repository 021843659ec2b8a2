#include "backends/cpu/repack.h"

#include <cstring>

namespace tern::cpu {
namespace {

// Element e of a Q4_0 block's 16 nibble bytes (elements 0..15 low nibbles, 16..31 high).
inline uint8_t q4_0_level(const uint8_t* qs, int e) { return e < 16 ? qs[e] & 0x0F : qs[e - 16] >> 4; }

}  // namespace

void repack_q4_0_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  const int64_t nb = n / 32;
  for (int64_t g = 0; g < n_rows / 8; ++g)
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* out = dst + (g * nb + b) * kQ4_0x8Block;
      for (int r = 0; r < 8; ++r) {
        const uint8_t* blk = src + (g * 8 + r) * row_bytes + b * 18;
        std::memcpy(out + 2 * r, blk, 2);
        for (int k = 0; k < 4; ++k)
          for (int i = 0; i < 4; ++i)
            out[16 + 32 * k + 4 * r + i] =
                static_cast<uint8_t>(q4_0_level(blk + 2, 4 * k + i) | q4_0_level(blk + 2, 4 * (k + 4) + i) << 4);
      }
    }
}

void unpack_q4_0_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  const int64_t nb = n / 32;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* in = group + b * kQ4_0x8Block;
    for (int r = 0; r < 8; ++r) {
      uint8_t* blk = rows + r * row_bytes + b * 18;
      std::memcpy(blk, in + 2 * r, 2);
      uint8_t level[32];
      for (int k = 0; k < 4; ++k)
        for (int i = 0; i < 4; ++i) {
          const uint8_t byte = in[16 + 32 * k + 4 * r + i];
          level[4 * k + i] = byte & 0x0F;
          level[4 * (k + 4) + i] = byte >> 4;
        }
      for (int j = 0; j < 16; ++j) blk[2 + j] = static_cast<uint8_t>(level[j] | level[j + 16] << 4);
    }
  }
}

}  // namespace tern::cpu
