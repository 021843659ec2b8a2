#include "backends/cpu/repack.h"

#include "quant/k_scales.h"

#include <cstring>

namespace tern::cpu {

namespace {

// Q4_0 (kHead 2: d) and Q4_1 (kHead 4: d, m) share the grouped layout: each f16 header field of the
// eight rows (d[8], then m[8]), then the levels as repack.h describes.
template <int kHead>
void repack_q4_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  constexpr int64_t kIn = kHead + 16, kOut = 8 * kHead + 128;
  const int64_t nb = n / 32;
  for (int64_t g = 0; g < n_rows / 8; ++g)
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* out = dst + (g * nb + b) * kOut;
      for (int r = 0; r < 8; ++r) {
        const uint8_t* blk = src + (g * 8 + r) * row_bytes + b * kIn;
        for (int f = 0; f < kHead / 2; ++f) std::memcpy(out + 16 * f + 2 * r, blk + 2 * f, 2);
        uint8_t level[32];
        for (int j = 0; j < 16; ++j) level[j] = blk[kHead + j] & 0x0F, level[j + 16] = blk[kHead + j] >> 4;
        for (int k = 0; k < 4; ++k)
          for (int i = 0; i < 4; ++i)
            out[8 * kHead + 32 * k + 4 * r + i] = static_cast<uint8_t>(level[4 * k + i] | level[4 * (k + 4) + i] << 4);
      }
    }
}

template <int kHead>
void unpack_q4_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  constexpr int64_t kIn = kHead + 16, kOut = 8 * kHead + 128;
  const int64_t nb = n / 32;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* in = group + b * kOut;
    for (int r = 0; r < 8; ++r) {
      uint8_t* blk = rows + r * row_bytes + b * kIn;
      for (int f = 0; f < kHead / 2; ++f) std::memcpy(blk + 2 * f, in + 16 * f + 2 * r, 2);
      uint8_t level[32];
      for (int k = 0; k < 4; ++k)
        for (int i = 0; i < 4; ++i) {
          const uint8_t byte = in[8 * kHead + 32 * k + 4 * r + i];
          level[4 * k + i] = byte & 0x0F;
          level[4 * (k + 4) + i] = byte >> 4;
        }
      for (int j = 0; j < 16; ++j) blk[kHead + j] = static_cast<uint8_t>(level[j] | level[j + 16] << 4);
    }
  }
}

}  // namespace

void repack_q4_0_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  repack_q4_x8<2>(src, row_bytes, n_rows, n, dst);
}
void unpack_q4_0_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  unpack_q4_x8<2>(group, n, rows, row_bytes);
}
void repack_q4_1_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  repack_q4_x8<4>(src, row_bytes, n_rows, n, dst);
}
void unpack_q4_1_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  unpack_q4_x8<4>(group, n, rows, row_bytes);
}

void repack_q8_0_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  const int64_t nb = n / 32;
  for (int64_t g = 0; g < n_rows / 8; ++g)
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* out = dst + (g * nb + b) * kQ8_0x8Block;
      for (int r = 0; r < 8; ++r) {
        const uint8_t* blk = src + (g * 8 + r) * row_bytes + b * 34;
        std::memcpy(out + 2 * r, blk, 2);
        for (int k = 0; k < 8; ++k) std::memcpy(out + 16 + 32 * k + 4 * r, blk + 2 + 4 * k, 4);
      }
    }
}

void unpack_q8_0_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  const int64_t nb = n / 32;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* in = group + b * kQ8_0x8Block;
    for (int r = 0; r < 8; ++r) {
      uint8_t* blk = rows + r * row_bytes + b * 34;
      std::memcpy(blk, in + 2 * r, 2);
      for (int k = 0; k < 8; ++k) std::memcpy(blk + 2 + 4 * k, in + 16 + 32 * k + 4 * r, 4);
    }
  }
}

namespace {


inline void get_scale_min(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  int s = 0, mn = 0;
  quant::get_scale_min_k4(j, q, s, mn);
  sc = static_cast<uint8_t>(s);
  m = static_cast<uint8_t>(mn);
}
// The inverse of get_scale_min_k4 (quant/k_scales.h) over a field that holds other pairs already.
inline void set_scale_min(int j, uint8_t sc, uint8_t m, uint8_t* q) {
  if (j < 4) {
    q[j] = static_cast<uint8_t>((q[j] & 0xC0) | sc);
    q[j + 4] = static_cast<uint8_t>((q[j + 4] & 0xC0) | m);
  } else {
    q[j + 4] = static_cast<uint8_t>((sc & 0xF) | ((m & 0xF) << 4));
    q[j - 4] = static_cast<uint8_t>((q[j - 4] & 0x3F) | ((sc >> 4) << 6));
    q[j] = static_cast<uint8_t>((q[j] & 0x3F) | ((m >> 4) << 6));
  }
}

}  // namespace

void repack_q4_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  const int64_t nsb = n / 256;
  for (int64_t g = 0; g < n_rows / 8; ++g)
    for (int64_t b = 0; b < nsb; ++b) {
      uint8_t* out = dst + (g * nsb + b) * kQ4_Kx8Block;
      for (int r = 0; r < 8; ++r) {
        const uint8_t* blk = src + (g * 8 + r) * row_bytes + b * 144;
        std::memcpy(out + 2 * r, blk, 2);
        std::memcpy(out + 16 + 2 * r, blk + 2, 2);
        for (int j = 0; j < 8; ++j) get_scale_min(j, blk + 4, out[32 + 8 * j + r], out[96 + 8 * j + r]);
        // In each 64-element chunk c, byte 32c + l holds element l (low nibble) and l + 32 (high).
        uint8_t level[256];
        for (int c = 0; c < 4; ++c)
          for (int l = 0; l < 32; ++l)
            level[64 * c + l] = blk[16 + 32 * c + l] & 0x0F, level[64 * c + 32 + l] = blk[16 + 32 * c + l] >> 4;
        for (int j = 0; j < 8; ++j)
          for (int k = 0; k < 4; ++k)
            for (int i = 0; i < 4; ++i)
              out[160 + 128 * j + 32 * k + 4 * r + i] =
                  static_cast<uint8_t>(level[32 * j + 4 * k + i] | level[32 * j + 4 * (k + 4) + i] << 4);
      }
    }
}

void unpack_q4_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  const int64_t nsb = n / 256;
  for (int64_t b = 0; b < nsb; ++b) {
    const uint8_t* in = group + b * kQ4_Kx8Block;
    for (int r = 0; r < 8; ++r) {
      uint8_t* blk = rows + r * row_bytes + b * 144;
      std::memcpy(blk, in + 2 * r, 2);
      std::memcpy(blk + 2, in + 16 + 2 * r, 2);
      std::memset(blk + 4, 0, 12);
      for (int j = 0; j < 8; ++j) set_scale_min(j, in[32 + 8 * j + r], in[96 + 8 * j + r], blk + 4);
      uint8_t level[256];
      for (int j = 0; j < 8; ++j)
        for (int k = 0; k < 4; ++k)
          for (int i = 0; i < 4; ++i) {
            const uint8_t byte = in[160 + 128 * j + 32 * k + 4 * r + i];
            level[32 * j + 4 * k + i] = byte & 0x0F;
            level[32 * j + 4 * (k + 4) + i] = byte >> 4;
          }
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) blk[16 + 32 * c + l] = static_cast<uint8_t>(level[64 * c + l] | level[64 * c + 32 + l] << 4);
    }
  }
}

namespace {

// A Q6_K block's 256 unsigned 6-bit levels and back: in each 128-element half h, byte 64h + l of
// ql holds elements 128h + l (low nibble) and + 64 (high), byte 64h + 32 + l elements + 32 and
// + 96; byte 128 + 32h + l of qh their top two bits at bits 0, 2, 4, 6 in that order.
void q6_k_levels(const uint8_t* blk, uint8_t* level) {
  for (int h = 0; h < 2; ++h)
    for (int x = 0; x < 4; ++x)
      for (int l = 0; l < 32; ++l) {
        const uint8_t lo = blk[64 * h + 32 * (x & 1) + l];
        level[128 * h + 32 * x + l] =
            static_cast<uint8_t>(((x < 2 ? lo : lo >> 4) & 0x0F) | ((blk[128 + 32 * h + l] >> (2 * x)) & 3) << 4);
      }
}
void q6_k_store_levels(const uint8_t* level, uint8_t* blk) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const uint8_t* e = level + 128 * h + l;
      blk[64 * h + l] = static_cast<uint8_t>((e[0] & 0x0F) | (e[64] & 0x0F) << 4);
      blk[64 * h + 32 + l] = static_cast<uint8_t>((e[32] & 0x0F) | (e[96] & 0x0F) << 4);
      blk[128 + 32 * h + l] = static_cast<uint8_t>(e[0] >> 4 | (e[32] >> 4) << 2 | (e[64] >> 4) << 4 | (e[96] >> 4) << 6);
    }
}

}  // namespace

void repack_q6_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  const int64_t nsb = n / 256;
  for (int64_t g = 0; g < n_rows / 8; ++g)
    for (int64_t b = 0; b < nsb; ++b) {
      uint8_t* out = dst + (g * nsb + b) * kQ6_Kx8Block;
      for (int r = 0; r < 8; ++r) {
        const uint8_t* blk = src + (g * 8 + r) * row_bytes + b * 210;
        std::memcpy(out + 2 * r, blk + 208, 2);
        for (int s = 0; s < 16; ++s) out[16 + 8 * s + r] = blk[192 + s];
        uint8_t level[256];
        q6_k_levels(blk, level);
        for (int j = 0; j < 8; ++j) {
          uint8_t* unit = out + 144 + 192 * j;
          const uint8_t* e = level + 32 * j;
          for (int k = 0; k < 4; ++k)
            for (int i = 0; i < 4; ++i)
              unit[32 * k + 4 * r + i] = static_cast<uint8_t>((e[4 * k + i] & 0x0F) | (e[4 * (k + 4) + i] & 0x0F) << 4);
          for (int h = 0; h < 2; ++h)
            for (int i = 0; i < 4; ++i) {
              const uint8_t* c = e + 16 * h + i;  // chunks 4h..4h + 3, element i of each
              unit[128 + 32 * h + 4 * r + i] = static_cast<uint8_t>(c[0] >> 4 | (c[4] >> 4) << 2 | (c[8] >> 4) << 4 | (c[12] >> 4) << 6);
            }
        }
      }
    }
}

void unpack_q6_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  const int64_t nsb = n / 256;
  for (int64_t b = 0; b < nsb; ++b) {
    const uint8_t* in = group + b * kQ6_Kx8Block;
    for (int r = 0; r < 8; ++r) {
      uint8_t* blk = rows + r * row_bytes + b * 210;
      std::memcpy(blk + 208, in + 2 * r, 2);
      for (int s = 0; s < 16; ++s) blk[192 + s] = in[16 + 8 * s + r];
      uint8_t level[256];
      for (int j = 0; j < 8; ++j) {
        const uint8_t* unit = in + 144 + 192 * j;
        for (int k = 0; k < 8; ++k)
          for (int i = 0; i < 4; ++i) {
            const uint8_t nib = unit[32 * (k % 4) + 4 * r + i];
            const int top = (unit[128 + 32 * (k / 4) + 4 * r + i] >> (2 * (k % 4))) & 3;
            level[32 * j + 4 * k + i] = static_cast<uint8_t>(((k < 4 ? nib : nib >> 4) & 0x0F) | top << 4);
          }
      }
      q6_k_store_levels(level, blk);
    }
  }
}

}  // namespace tern::cpu
