#include "backends/cpu/repack.h"

#include "quant/k_scales.h"

#include <cstring>

namespace tern::cpu {

namespace {

// Every grouped layout's walk: fn(out, blk, r) for each block b of each group of eight rows and
// each row r of it, where out is the group's block b in the repacked layout (kOut bytes) and blk
// row r's block b in the file (kIn bytes).
template <int64_t kIn, int64_t kOut, class Fn>
void each_row_block(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t nb, uint8_t* dst, Fn&& fn) {
  for (int64_t g = 0; g < n_rows / 8; ++g)
    for (int64_t b = 0; b < nb; ++b)
      for (int r = 0; r < 8; ++r) fn(dst + (g * nb + b) * kOut, src + (g * 8 + r) * row_bytes + b * kIn, r);
}

// The way back over one group: fn(in, blk, r) with in the group's block b and blk row r's block b.
template <int64_t kIn, int64_t kOut, class Fn>
void each_group_block(const uint8_t* group, int64_t nb, uint8_t* rows, size_t row_bytes, Fn&& fn) {
  for (int64_t b = 0; b < nb; ++b)
    for (int r = 0; r < 8; ++r) fn(group + b * kOut, rows + r * row_bytes + b * kIn, r);
}

// Q4_0 (kHead 2: d) and Q4_1 (kHead 4: d, m) share the grouped layout: each f16 header field of the
// eight rows (d[8], then m[8]), then the levels as repack.h describes.
template <int kHead>
void repack_q4_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  constexpr int64_t kIn = kHead + 16, kOut = 8 * kHead + 128;
  const int64_t nb = n / 32;
  each_row_block<kIn, kOut>(src, row_bytes, n_rows, nb, dst, [](uint8_t* out, const uint8_t* blk, int r) {
    for (int f = 0; f < kHead / 2; ++f) std::memcpy(out + 16 * f + 2 * r, blk + 2 * f, 2);
    uint8_t level[32];
    for (int j = 0; j < 16; ++j) level[j] = blk[kHead + j] & 0x0F, level[j + 16] = blk[kHead + j] >> 4;
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 4; ++i)
        out[8 * kHead + 32 * k + 4 * r + i] = static_cast<uint8_t>(level[4 * k + i] | level[4 * (k + 4) + i] << 4);
  });
}

template <int kHead>
void unpack_q4_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  constexpr int64_t kIn = kHead + 16, kOut = 8 * kHead + 128;
  const int64_t nb = n / 32;
  each_group_block<kIn, kOut>(group, nb, rows, row_bytes, [](const uint8_t* in, uint8_t* blk, int r) {
    for (int f = 0; f < kHead / 2; ++f) std::memcpy(blk + 2 * f, in + 16 * f + 2 * r, 2);
    uint8_t level[32];
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 4; ++i) {
        const uint8_t byte = in[8 * kHead + 32 * k + 4 * r + i];
        level[4 * k + i] = byte & 0x0F;
        level[4 * (k + 4) + i] = byte >> 4;
      }
    for (int j = 0; j < 16; ++j) blk[kHead + j] = static_cast<uint8_t>(level[j] | level[j + 16] << 4);
  });
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
  each_row_block<34, kQ8_0x8Block>(src, row_bytes, n_rows, nb, dst, [](uint8_t* out, const uint8_t* blk, int r) {
    std::memcpy(out + 2 * r, blk, 2);
    for (int k = 0; k < 8; ++k) std::memcpy(out + 16 + 32 * k + 4 * r, blk + 2 + 4 * k, 4);
  });
}

void unpack_q8_0_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  const int64_t nb = n / 32;
  each_group_block<34, kQ8_0x8Block>(group, nb, rows, row_bytes, [](const uint8_t* in, uint8_t* blk, int r) {
    std::memcpy(blk, in + 2 * r, 2);
    for (int k = 0; k < 8; ++k) std::memcpy(blk + 2 + 4 * k, in + 16 + 32 * k + 4 * r, 4);
  });
}

namespace {

// Q4_K (kFifth false) and Q5_K (true): see repack.h. The file's levels: in each 64-element chunk c,
// byte 32c + l of the nibbles holds element 64c + l (low nibble) and 64c + 32 + l (high); Q5_K's
// fifth bits are bit 2c (element 64c + l) and 2c + 1 (64c + 32 + l) of byte l of qh.
template <bool kFifth>
struct QKx8 {
  static constexpr int64_t kIn = kFifth ? 176 : 144, kOut = kFifth ? kQ5_Kx8Block : kQ4_Kx8Block;
  static constexpr int64_t kNibbles = kFifth ? 48 : 16, kUnit = kFifth ? 160 : 128;

  static void levels(const uint8_t* blk, uint8_t* level) {
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        const uint8_t byte = blk[kNibbles + 32 * c + l];
        const int f0 = kFifth ? ((blk[16 + l] >> (2 * c)) & 1) << 4 : 0;
        const int f1 = kFifth ? ((blk[16 + l] >> (2 * c + 1)) & 1) << 4 : 0;
        level[64 * c + l] = static_cast<uint8_t>((byte & 0x0F) | f0);
        level[64 * c + 32 + l] = static_cast<uint8_t>((byte >> 4) | f1);
      }
  }
  static void store_levels(const uint8_t* level, uint8_t* blk) {
    if (kFifth) std::memset(blk + 16, 0, 32);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        const uint8_t lo = level[64 * c + l], hi = level[64 * c + 32 + l];
        blk[kNibbles + 32 * c + l] = static_cast<uint8_t>((lo & 0x0F) | (hi & 0x0F) << 4);
        if (kFifth) blk[16 + l] = static_cast<uint8_t>(blk[16 + l] | (lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
      }
  }

  static void repack(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
    const int64_t nsb = n / 256;
    each_row_block<kIn, kOut>(src, row_bytes, n_rows, nsb, dst, [](uint8_t* out, const uint8_t* blk, int r) {
      std::memcpy(out + 2 * r, blk, 2);
      std::memcpy(out + 16 + 2 * r, blk + 2, 2);
      for (int p = 0; p < 12; ++p) out[32 + 8 * p + r] = blk[4 + p];
      uint8_t level[256];
      levels(blk, level);
      for (int j = 0; j < 8; ++j) {
        uint8_t* unit = out + kQKx8Units + kUnit * j;
        const uint8_t* e = level + 32 * j;
        for (int k = 0; k < 4; ++k)
          for (int i = 0; i < 4; ++i)
            unit[32 * k + 4 * r + i] = static_cast<uint8_t>((e[4 * k + i] & 0x0F) | (e[4 * (k + 4) + i] & 0x0F) << 4);
        if (kFifth)
          for (int i = 0; i < 4; ++i) {
            uint8_t bits = 0;
            for (int k = 0; k < 8; ++k) bits = static_cast<uint8_t>(bits | (e[4 * k + i] >> 4) << k);
            unit[128 + 4 * r + i] = bits;
          }
      }
    });
  }

  static void unpack(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
    const int64_t nsb = n / 256;
    each_group_block<kIn, kOut>(group, nsb, rows, row_bytes, [](const uint8_t* in, uint8_t* blk, int r) {
      std::memcpy(blk, in + 2 * r, 2);
      std::memcpy(blk + 2, in + 16 + 2 * r, 2);
      uint8_t field[12];
      qk_x8_row_scales(in + 32, r, field);
      std::memcpy(blk + 4, field, 12);
      uint8_t level[256];
      for (int j = 0; j < 8; ++j) {
        const uint8_t* unit = in + kQKx8Units + kUnit * j;
        for (int k = 0; k < 8; ++k)
          for (int i = 0; i < 4; ++i) level[32 * j + 4 * k + i] = static_cast<uint8_t>(qk_x8_level<kFifth>(unit, r, k, i));
      }
      store_levels(level, blk);
    });
  }
};

}  // namespace

void repack_q4_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  QKx8<false>::repack(src, row_bytes, n_rows, n, dst);
}
void unpack_q4_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  QKx8<false>::unpack(group, n, rows, row_bytes);
}
void repack_q5_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  QKx8<true>::repack(src, row_bytes, n_rows, n, dst);
}
void unpack_q5_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  QKx8<true>::unpack(group, n, rows, row_bytes);
}

namespace {

// The two low bits of a unit's 32 levels e (Q3_K, Q2_K) into their bytes (low2_x8_level reads them).
void pack_low2(const uint8_t* e, int r, uint8_t* unit) {
  for (int i = 0; i < 4; ++i)
    for (int v = 0; v < 2; ++v) {
      uint8_t low = 0;
      for (int c = 0; c < 4; ++c) low = static_cast<uint8_t>(low | (e[4 * (4 * v + c) + i] & 3) << (2 * c));
      unit[32 * v + 4 * r + i] = low;
    }
}

// Q6_K and Q3_K (repack.h): unsigned levels with an offset, a signed scale per 16 elements, one f16
// d. Each policy reads and writes the file's block (levels, scales, d) and packs a 32-element unit.
struct Q6File {
  static constexpr int64_t kIn = 210, kD = 208, kOut = kQ6_Kx8Block, kUnit = 192;
  // In each 128-element half h, byte 64h + l of ql holds elements 128h + l (low nibble) and + 64
  // (high), byte 64h + 32 + l elements + 32 and + 96; byte 128 + 32h + l of qh their top two bits
  // at bits 0, 2, 4, 6 in that order.
  static void levels(const uint8_t* blk, uint8_t* level) {
    for (int h = 0; h < 2; ++h)
      for (int x = 0; x < 4; ++x)
        for (int l = 0; l < 32; ++l) {
          const uint8_t lo = blk[64 * h + 32 * (x & 1) + l];
          level[128 * h + 32 * x + l] =
              static_cast<uint8_t>(((x < 2 ? lo : lo >> 4) & 0x0F) | ((blk[128 + 32 * h + l] >> (2 * x)) & 3) << 4);
        }
  }
  static void store_levels(const uint8_t* level, uint8_t* blk) {
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const uint8_t* e = level + 128 * h + l;
        blk[64 * h + l] = static_cast<uint8_t>((e[0] & 0x0F) | (e[64] & 0x0F) << 4);
        blk[64 * h + 32 + l] = static_cast<uint8_t>((e[32] & 0x0F) | (e[96] & 0x0F) << 4);
        blk[128 + 32 * h + l] = static_cast<uint8_t>(e[0] >> 4 | (e[32] >> 4) << 2 | (e[64] >> 4) << 4 | (e[96] >> 4) << 6);
      }
  }
  static int8_t scale(const uint8_t* blk, int s) { return static_cast<int8_t>(blk[192 + s]); }
  static void store_scales(const int8_t* sc, uint8_t* blk) { std::memcpy(blk + 192, sc, 16); }
  // e: the unit's 32 levels.
  static void pack_unit(const uint8_t* e, int r, uint8_t* unit) {
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 4; ++i)
        unit[32 * k + 4 * r + i] = static_cast<uint8_t>((e[4 * k + i] & 0x0F) | (e[4 * (k + 4) + i] & 0x0F) << 4);
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 4; ++i) {
        const uint8_t* c = e + 16 * h + i;  // chunks 4h..4h + 3, element i of each
        unit[128 + 32 * h + 4 * r + i] = static_cast<uint8_t>(c[0] >> 4 | (c[4] >> 4) << 2 | (c[8] >> 4) << 4 | (c[12] >> 4) << 6);
      }
  }
  static int unit_level(const uint8_t* unit, int r, int k, int i) { return q6_k_x8_level(unit, r, k, i); }
};

struct Q3File {
  static constexpr int64_t kIn = 110, kD = 108, kOut = kQ3_Kx8Block, kUnit = 96;
  // Element 128h + 32x + l: two low bits at bit 2x of byte 32 + 32h + l, the third at bit 4h + x of
  // byte l; 6-bit scales (minus 32) at 96.
  static void levels(const uint8_t* blk, uint8_t* level) {
    for (int h = 0; h < 2; ++h)
      for (int x = 0; x < 4; ++x)
        for (int l = 0; l < 32; ++l)
          level[128 * h + 32 * x + l] =
              static_cast<uint8_t>(((blk[32 + 32 * h + l] >> (2 * x)) & 3) | ((blk[l] >> (4 * h + x)) & 1) << 2);
  }
  static void store_levels(const uint8_t* level, uint8_t* blk) {
    std::memset(blk, 0, 96);
    for (int h = 0; h < 2; ++h)
      for (int x = 0; x < 4; ++x)
        for (int l = 0; l < 32; ++l) {
          const uint8_t v = level[128 * h + 32 * x + l];
          blk[32 + 32 * h + l] = static_cast<uint8_t>(blk[32 + 32 * h + l] | (v & 3) << (2 * x));
          blk[l] = static_cast<uint8_t>(blk[l] | (v >> 2) << (4 * h + x));
        }
  }
  static int8_t scale(const uint8_t* blk, int s) { return static_cast<int8_t>(quant::get_scale_q3k(s, blk + 96) - 32); }
  static void store_scales(const int8_t* sc, uint8_t* blk) {
    std::memset(blk + 96, 0, 12);
    for (int s = 0; s < 16; ++s) quant::set_scale_q3k(s, sc[s] + 32, blk + 96);
  }
  // Bytes 32v + 4r + i hold the two low bits of chunks 4v..4v + 3 (bits 2c), bytes 64 + 4r + i the
  // third bit of chunk k at bit k.
  static void pack_unit(const uint8_t* e, int r, uint8_t* unit) {
    pack_low2(e, r, unit);
    for (int i = 0; i < 4; ++i) {
      uint8_t third = 0;
      for (int k = 0; k < 8; ++k) third = static_cast<uint8_t>(third | (e[4 * k + i] >> 2) << k);
      unit[64 + 4 * r + i] = third;
    }
  }
  static int unit_level(const uint8_t* unit, int r, int k, int i) { return q3_k_x8_level(unit, r, k, i); }
};

template <class F>
void repack_offset_k(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  const int64_t nsb = n / 256;
  each_row_block<F::kIn, F::kOut>(src, row_bytes, n_rows, nsb, dst, [](uint8_t* out, const uint8_t* blk, int r) {
    std::memcpy(out + 2 * r, blk + F::kD, 2);
    for (int s = 0; s < 16; ++s) out[16 + 8 * s + r] = static_cast<uint8_t>(F::scale(blk, s));
    uint8_t level[256];
    F::levels(blk, level);
    for (int j = 0; j < 8; ++j) F::pack_unit(level + 32 * j, r, out + 144 + F::kUnit * j);
  });
}

template <class F>
void unpack_offset_k(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  const int64_t nsb = n / 256;
  each_group_block<F::kIn, F::kOut>(group, nsb, rows, row_bytes, [](const uint8_t* in, uint8_t* blk, int r) {
    std::memcpy(blk + F::kD, in + 2 * r, 2);
    int8_t sc[16];
    for (int s = 0; s < 16; ++s) sc[s] = static_cast<int8_t>(in[16 + 8 * s + r]);
    F::store_scales(sc, blk);
    uint8_t level[256];
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < 8; ++k)
        for (int i = 0; i < 4; ++i) level[32 * j + 4 * k + i] = static_cast<uint8_t>(F::unit_level(in + 144 + F::kUnit * j, r, k, i));
    F::store_levels(level, blk);
  });
}

}  // namespace

void repack_q6_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  repack_offset_k<Q6File>(src, row_bytes, n_rows, n, dst);
}
void unpack_q6_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  unpack_offset_k<Q6File>(group, n, rows, row_bytes);
}
void repack_q3_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  repack_offset_k<Q3File>(src, row_bytes, n_rows, n, dst);
}
void unpack_q3_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  unpack_offset_k<Q3File>(group, n, rows, row_bytes);
}

// Q2_K: element 128h + 32x + l at bit 2x of byte 16 + 32h + l; scale bytes (scale | min << 4) at
// 0; d at 80, dmin at 82.
void repack_q2_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst) {
  const int64_t nsb = n / 256;
  each_row_block<84, kQ2_Kx8Block>(src, row_bytes, n_rows, nsb, dst, [](uint8_t* out, const uint8_t* blk, int r) {
    std::memcpy(out + 2 * r, blk + 80, 2);
    std::memcpy(out + 16 + 2 * r, blk + 82, 2);
    for (int s = 0; s < 16; ++s) out[32 + 8 * s + r] = blk[s];
    uint8_t level[256];
    for (int h = 0; h < 2; ++h)
      for (int x = 0; x < 4; ++x)
        for (int l = 0; l < 32; ++l) level[128 * h + 32 * x + l] = (blk[16 + 32 * h + l] >> (2 * x)) & 3;
    for (int j = 0; j < 8; ++j) pack_low2(level + 32 * j, r, out + 160 + 64 * j);
  });
}

void unpack_q2_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes) {
  const int64_t nsb = n / 256;
  each_group_block<84, kQ2_Kx8Block>(group, nsb, rows, row_bytes, [](const uint8_t* in, uint8_t* blk, int r) {
    std::memcpy(blk + 80, in + 2 * r, 2);
    std::memcpy(blk + 82, in + 16 + 2 * r, 2);
    for (int s = 0; s < 16; ++s) blk[s] = in[32 + 8 * s + r];
    std::memset(blk + 16, 0, 64);
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < 8; ++k)
        for (int i = 0; i < 4; ++i) {
          const int e = 32 * j + 4 * k + i, h = e / 128, x = (e % 128) / 32, l = e % 32;
          blk[16 + 32 * h + l] = static_cast<uint8_t>(blk[16 + 32 * h + l] | low2_x8_level(in + 160 + 64 * j, r, k, i) << (2 * x));
        }
  });
}

}  // namespace tern::cpu
