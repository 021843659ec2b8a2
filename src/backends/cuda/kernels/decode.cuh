// Device decoders of the weight formats: unit u (elements 32u .. 32u + 31) of a row into 32 floats,
// with the reference decoders' arithmetic (src/quant/quant_legacy.cpp, quant_k.cpp), and for the
// legacy formats and Q4_K/Q5_K/Q6_K into integer levels for 8-bit dot products. The file's layout
// is read with 2-byte loads where its blocks are only 2-byte aligned (legacy, Q6_K) and 16-byte
// loads where they are whole 16-byte words (Q4_K, Q5_K); the split layout of Q4_0/Q4_1/Q8_0/Q6_K
// (launch.h) with aligned 16-byte loads of quants.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "quant/k_scales.h"
#include "quant/k_unit_levels.h"

namespace tern::cuda {

__device__ __forceinline__ float h2f(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
__device__ __forceinline__ uint16_t ld16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }
__device__ __forceinline__ uint32_t ld32_2(const uint8_t* p) {  // 4 bytes at a 2-byte aligned address
  return static_cast<uint32_t>(ld16(p)) | (static_cast<uint32_t>(ld16(p + 2)) << 16);
}

// Where a weight's rows are and how long they are, for the decoders.
struct RowRef {
  const uint8_t* data;      // file layout: the rows; split layout: the quants
  const uint8_t* scales;    // split layout: the scales (f16 d, or d and m pairs), block after block
  int64_t n_units;          // 32-element units per row
  int64_t row_bytes;        // file layout: a row's bytes; split layout: a row's quants
  int64_t scale_row_bytes;  // split layout: a row's scales
};

template <DType T, bool kSplit>
struct Unit;

template <>
struct Unit<DType::F32, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const auto* p = reinterpret_cast<const float4*>(w.data + row * w.row_bytes) + 8 * u;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float4 v = __ldg(p + k);
      y[4 * k] = v.x, y[4 * k + 1] = v.y, y[4 * k + 2] = v.z, y[4 * k + 3] = v.w;
    }
  }
};

// Two 16-bit floats packed in a word (element order: low half first) as two floats.
__device__ __forceinline__ float2 unpack2(const uint32_t w, std::integral_constant<DType, DType::F16>) {
  return __half22float2(*reinterpret_cast<const __half2*>(&w));
}
__device__ __forceinline__ float2 unpack2(const uint32_t w, std::integral_constant<DType, DType::BF16>) {
  return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xFFFF0000u));
}

// A unit of an F16/BF16 row as loaded: 64 bytes, not yet widened (a GEMV thread loads its units
// before it waits for its input, and holds them in half the registers the floats would take).
struct Raw16 {
  uint4 v[4];
};

// F16 and BF16 rows: a unit is 64 bytes, four 16-byte loads.
template <DType T>
struct Unit16 {
  __device__ static void load(const RowRef& w, int64_t row, int64_t u, Raw16& r) {
    const auto* p = reinterpret_cast<const uint4*>(w.data + row * w.row_bytes) + 4 * u;
#pragma unroll
    for (int k = 0; k < 4; ++k) r.v[k] = __ldg(p + k);
  }
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    Raw16 r;
    load(w, row, u, r);
    widen(r, y);
  }
  __device__ static void widen(const Raw16& r, float (&y)[32]) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint4 v = r.v[k];
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = unpack2(words[i], std::integral_constant<DType, T>{});
        y[8 * k + 2 * i] = f.x, y[8 * k + 2 * i + 1] = f.y;
      }
    }
  }
};
template <>
struct Unit<DType::F16, false> : Unit16<DType::F16> {};
template <>
struct Unit<DType::BF16, false> : Unit16<DType::BF16> {};

// --- legacy 32-element blocks -------------------------------------------------------------------
//
// A block's 32 levels as signed bytes with the format's offset removed (Q4_0: q - 8, Q5_0: q - 16),
// four per word in element order, and its scale d and min m (Q4_1, Q5_1): element e = level * d + m,
// the reference's arithmetic. The words feed __dp4a against 8-bit activations directly.
struct Levels {
  uint32_t q[8];
  float d, m;
};

// Low and high nibbles of four bytes as two words of four levels each (elements j..j+3 and
// j+16..j+19 of a 16-byte nibble array).
__device__ __forceinline__ uint32_t lo_nibbles(uint32_t w) { return w & 0x0F0F0F0Fu; }
__device__ __forceinline__ uint32_t hi_nibbles(uint32_t w) { return (w >> 4) & 0x0F0F0F0Fu; }
// Bits b..b+3 of qh moved to bit 4 of each byte of a word.
__device__ __forceinline__ uint32_t fifth_bits(uint32_t qh, int b) {
  const uint32_t h = (qh >> b) & 0xF;
  return ((h & 1) << 4) | ((h & 2) << 11) | ((h & 4) << 18) | ((h & 8) << 25);
}

// 16 nibble bytes (words w[0..3]) into levels; kOffset is subtracted byte-wise (0, 8 or 16).
template <uint32_t kOffset>
__device__ __forceinline__ void nibble_levels(const uint32_t (&w)[4], uint32_t qh, bool five, Levels& l) {
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    uint32_t lo = lo_nibbles(w[k]), hi = hi_nibbles(w[k]);
    if (five) lo |= fifth_bits(qh, 4 * k), hi |= fifth_bits(qh, 16 + 4 * k);
    l.q[k] = kOffset ? __vsub4(lo, kOffset * 0x01010101u) : lo;
    l.q[k + 4] = kOffset ? __vsub4(hi, kOffset * 0x01010101u) : hi;
  }
}

template <DType T, bool kSplit>
struct Legacy;

template <>
struct Legacy<DType::Q4_0, false> {
  __device__ static void load(const RowRef& w, int64_t row, int64_t u, Levels& l) {
    const uint8_t* b = w.data + row * w.row_bytes + u * 18;
    uint32_t q[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) q[k] = ld32_2(b + 2 + 4 * k);
    nibble_levels<8>(q, 0, false, l);
    l.d = h2f(ld16(b)), l.m = 0.0f;
  }
};

template <>
struct Legacy<DType::Q4_1, false> {
  __device__ static void load(const RowRef& w, int64_t row, int64_t u, Levels& l) {
    const uint8_t* b = w.data + row * w.row_bytes + u * 20;
    uint32_t q[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) q[k] = ld32_2(b + 4 + 4 * k);
    nibble_levels<0>(q, 0, false, l);
    l.d = h2f(ld16(b)), l.m = h2f(ld16(b + 2));
  }
};

template <>
struct Legacy<DType::Q5_0, false> {
  __device__ static void load(const RowRef& w, int64_t row, int64_t u, Levels& l) {
    const uint8_t* b = w.data + row * w.row_bytes + u * 22;
    uint32_t q[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) q[k] = ld32_2(b + 6 + 4 * k);
    nibble_levels<16>(q, ld32_2(b + 2), true, l);
    l.d = h2f(ld16(b)), l.m = 0.0f;
  }
};

template <>
struct Legacy<DType::Q5_1, false> {
  __device__ static void load(const RowRef& w, int64_t row, int64_t u, Levels& l) {
    const uint8_t* b = w.data + row * w.row_bytes + u * 24;
    uint32_t q[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) q[k] = ld32_2(b + 8 + 4 * k);
    nibble_levels<0>(q, ld32_2(b + 4), true, l);
    l.d = h2f(ld16(b)), l.m = h2f(ld16(b + 2));
  }
};

template <>
struct Legacy<DType::Q8_0, false> {
  __device__ static void load(const RowRef& w, int64_t row, int64_t u, Levels& l) {
    const uint8_t* b = w.data + row * w.row_bytes + u * 34;
#pragma unroll
    for (int k = 0; k < 8; ++k) l.q[k] = ld32_2(b + 2 + 4 * k);
    l.d = h2f(ld16(b)), l.m = 0.0f;
  }
};

// The split layout (Q4_0, Q4_1, Q8_0; launch.h): a unit's quants as kQuant16 aligned 16-byte words,
// its scale as a word of kScaleBytes (f16 d, or d in the low and m in the high half). levels() takes
// them as loaded, from global memory (Legacy below) or from a shared-memory stage (gemv_stream.cu).
template <DType T>
struct SplitUnit;

template <>
struct SplitUnit<DType::Q4_0> {
  static constexpr int kQuant16 = 1, kScaleBytes = 2;
  __device__ static void levels(const uint4 (&v)[1], uint32_t scale, Levels& l) {
    const uint32_t q[4] = {v[0].x, v[0].y, v[0].z, v[0].w};
    nibble_levels<8>(q, 0, false, l);
    l.d = h2f(static_cast<uint16_t>(scale & 0xFFFF)), l.m = 0.0f;
  }
};

template <>
struct SplitUnit<DType::Q4_1> {
  static constexpr int kQuant16 = 1, kScaleBytes = 4;
  __device__ static void levels(const uint4 (&v)[1], uint32_t scale, Levels& l) {
    const uint32_t q[4] = {v[0].x, v[0].y, v[0].z, v[0].w};
    nibble_levels<0>(q, 0, false, l);
    l.d = h2f(static_cast<uint16_t>(scale & 0xFFFF)), l.m = h2f(static_cast<uint16_t>(scale >> 16));
  }
};

template <>
struct SplitUnit<DType::Q8_0> {
  static constexpr int kQuant16 = 2, kScaleBytes = 2;
  __device__ static void levels(const uint4 (&v)[2], uint32_t scale, Levels& l) {
    l.q[0] = v[0].x, l.q[1] = v[0].y, l.q[2] = v[0].z, l.q[3] = v[0].w;
    l.q[4] = v[1].x, l.q[5] = v[1].y, l.q[6] = v[1].z, l.q[7] = v[1].w;
    l.d = h2f(static_cast<uint16_t>(scale & 0xFFFF)), l.m = 0.0f;
  }
};

constexpr bool has_split_unit(DType t) { return t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q8_0; }

template <DType T>
  requires(has_split_unit(T))
struct Legacy<T, true> {
  __device__ static void load(const RowRef& w, int64_t row, int64_t u, Levels& l) {
    using S = SplitUnit<T>;
    const int64_t i = row * w.n_units + u;
    uint4 v[S::kQuant16];
#pragma unroll
    for (int k = 0; k < S::kQuant16; ++k) v[k] = __ldg(reinterpret_cast<const uint4*>(w.data) + S::kQuant16 * i + k);
    const uint32_t scale = S::kScaleBytes == 2 ? __ldg(reinterpret_cast<const unsigned short*>(w.scales) + i)
                                               : __ldg(reinterpret_cast<const unsigned int*>(w.scales) + i);
    S::levels(v, scale, l);
  }
};

// The float decoding of a legacy unit: level * d (+ m), multiply and add rounded separately as in
// the reference (no fused multiply-add).
template <DType T, bool kSplit>
struct LegacyUnit {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    Levels l;
    Legacy<T, kSplit>::load(w, row, u, l);
    const bool affine = T == DType::Q4_1 || T == DType::Q5_1;
#pragma unroll
    for (int e = 0; e < 32; ++e) {
      const float q = static_cast<float>(static_cast<int8_t>((l.q[e / 4] >> (8 * (e % 4))) & 0xFF));
      y[e] = affine ? __fadd_rn(__fmul_rn(q, l.d), l.m) : __fmul_rn(q, l.d);
    }
  }
};

constexpr bool is_legacy_type(DType t) {
  return t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q5_0 || t == DType::Q5_1 || t == DType::Q8_0;
}
template <DType T, bool kSplit>
  requires(is_legacy_type(T))
struct Unit<T, kSplit> : LegacyUnit<T, kSplit> {};

// --- K-quants: 256-element super-blocks, unit j = u % 8 of block u / 8 ---------------------------

template <>
struct Unit<DType::Q2_K, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const uint8_t* b = w.data + row * w.row_bytes + (u / 8) * 84;
    const int j = static_cast<int>(u % 8), shift = 2 * (j % 4);
    const float d = h2f(ld16(b + 80)), dmin = h2f(ld16(b + 82));
    const uint8_t* qs = b + 16 + (j / 4) * 32;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t sc = b[2 * j + h];
      const float dl = d * static_cast<float>(sc & 0xF), ml = dmin * static_cast<float>(sc >> 4);
#pragma unroll
      for (int l = 0; l < 16; ++l) y[16 * h + l] = dl * static_cast<float>((qs[16 * h + l] >> shift) & 3) - ml;
    }
  }
};

template <>
struct Unit<DType::Q3_K, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const uint8_t* b = w.data + row * w.row_bytes + (u / 8) * 110;
    const int j = static_cast<int>(u % 8), shift = 2 * (j % 4);
    const float d_all = h2f(ld16(b + 108));
    const uint8_t* qs = b + 32 + (j / 4) * 32;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float dl = d_all * static_cast<float>(quant::get_scale_q3k(2 * j + h, b + 96) - 32);
#pragma unroll
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * h + l;
        const int hbit = (b[e] >> j) & 1;
        y[e] = dl * static_cast<float>(((qs[e] >> shift) & 3) - (hbit ? 0 : 4));
      }
    }
  }
};

template <bool kFive>
__device__ void decode_affine_k(const uint8_t* b, int j, float (&y)[32]) {
  const float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
  int sc, m;
  quant::get_scale_min_k4(j, b + 4, sc, m);
  const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + (kFive ? 48 : 16) + (j / 2) * 32;
  const int shift = 4 * (j % 2);
#pragma unroll
  for (int l = 0; l < 32; ++l) {
    int q = (qs[l] >> shift) & 0xF;
    if (kFive) q += ((qh[l] >> j) & 1) ? 16 : 0;
    y[l] = d1 * static_cast<float>(q) - m1;
  }
}

template <>
struct Unit<DType::Q4_K, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    decode_affine_k<false>(w.data + row * w.row_bytes + (u / 8) * 144, static_cast<int>(u % 8), y);
  }
};

template <>
struct Unit<DType::Q5_K, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    decode_affine_k<true>(w.data + row * w.row_bytes + (u / 8) * 176, static_cast<int>(u % 8), y);
  }
};

// Q6_K unit j of a block whose quant and scale bytes (ql, qh, scales: 208) start at b, with its d.
__device__ __forceinline__ void decode_q6k(const uint8_t* b, float d, int j, float (&y)[32]) {
  const int half = j / 4, jj = j % 4;
  const uint8_t* ql = b + half * 64 + 32 * (jj & 1);
  const uint8_t* qh = b + 128 + half * 32;
  const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
#pragma unroll
  for (int l = 0; l < 32; ++l) {
    const int q = (((ql[l] >> (4 * (jj >> 1))) & 0xF) | (((qh[l] >> (2 * jj)) & 3) << 4)) - 32;
    y[l] = d * static_cast<float>(scales[(32 * j + l) / 16]) * static_cast<float>(q);
  }
}

template <>
struct Unit<DType::Q6_K, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const uint8_t* b = w.data + row * w.row_bytes + (u / 8) * 210;
    decode_q6k(b, h2f(ld16(b + 208)), static_cast<int>(u % 8), y);
  }
};

// Q6_K in the split layout (launch.h): a block's 208 bytes of quants and scales, d in the scale array.
template <>
struct Unit<DType::Q6_K, true> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const int64_t block = u / 8;
    const float d = h2f(ld16(w.scales + row * w.scale_row_bytes + 2 * block));
    decode_q6k(w.data + row * w.row_bytes + block * 208, d, static_cast<int>(u % 8), y);
  }
};

// --- K-quants as integer levels (quant/k_unit_levels.h), for dp4a against Q8_K activations ------

// A value of type V at p: through the read-only cache from global memory (kGlobal), or a plain
// load (shared memory: gemv_stream.cu's stages).
template <bool kGlobal, class V>
__device__ __forceinline__ V load_as(const uint8_t* p) {
  if constexpr (kGlobal) return __ldg(reinterpret_cast<const V*>(p));
  else return *reinterpret_cast<const V*>(p);
}

template <bool kGlobal = true>
__device__ __forceinline__ void load_words16(const uint8_t* p, uint32_t (&w)[8]) {  // 16-byte aligned
  const uint4 a = load_as<kGlobal, uint4>(p), b = load_as<kGlobal, uint4>(p + 16);
  w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = b.x, w[5] = b.y, w[6] = b.z, w[7] = b.w;
}

// Unit j of the Q4_K (kFive false, 144 bytes) or Q5_K (176) block at b (16-byte aligned): the
// quants and fifth bits are 16-byte loads, the scale field and d/dmin words.
template <bool kFive, bool kGlobal>
__device__ __forceinline__ void k45_levels_at(const uint8_t* b, int j, quant::KUnitLevels& l) {
  const uint32_t dm = load_as<kGlobal, unsigned int>(b);
  const uint32_t scales[3] = {load_as<kGlobal, unsigned int>(b + 4), load_as<kGlobal, unsigned int>(b + 8),
                              load_as<kGlobal, unsigned int>(b + 12)};
  uint32_t qs[8], qh[8] = {};
  load_words16<kGlobal>(b + (kFive ? 48 : 16) + 32 * (j / 2), qs);
  if (kFive) load_words16<kGlobal>(b + 16, qh);
  quant::k45_unit<kFive>(qs, qh, scales, j, h2f(static_cast<uint16_t>(dm & 0xFFFF)), h2f(static_cast<uint16_t>(dm >> 16)), l);
}

template <DType T, bool kSplit>
struct KLevels;

template <DType T>
  requires(T == DType::Q4_K || T == DType::Q5_K)
struct KLevels<T, false> {
  static constexpr bool kFive = T == DType::Q5_K;
  static constexpr bool kMin = true;
  static constexpr int kBlockBytes = kFive ? 176 : 144;
  __device__ static void load(const RowRef& w, int64_t row, int64_t u, quant::KUnitLevels& l) {
    k45_levels_at<kFive, true>(w.data + row * w.row_bytes + (u / 8) * kBlockBytes, static_cast<int>(u % 8), l);
  }
};

// Q6_K as in the file (210-byte blocks, 2-byte aligned): words from pairs of 2-byte loads.
template <>
struct KLevels<DType::Q6_K, false> {
  static constexpr bool kMin = false;
  __device__ static void load(const RowRef& w, int64_t row, int64_t u, quant::KUnitLevels& l) {
    const uint8_t* b = w.data + row * w.row_bytes + (u / 8) * 210;
    const int j = static_cast<int>(u % 8);
    const uint8_t* ql = b + 64 * (j / 4) + 32 * (j % 2);
    const uint8_t* qh = b + 128 + 32 * (j / 4);
    uint32_t lw[8], hw[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) lw[k] = ld32_2(ql + 4 * k), hw[k] = ld32_2(qh + 4 * k);
    const uint16_t sc = ld16(b + 192 + 2 * j);
    quant::q6k_unit(lw, hw, j, static_cast<int8_t>(sc & 0xFF), static_cast<int8_t>(sc >> 8), h2f(ld16(b + 208)), l);
  }
};

// Q6_K in the split layout: 208-byte blocks (16-byte aligned), so ql and qh are 16-byte loads.
template <>
struct KLevels<DType::Q6_K, true> {
  static constexpr bool kMin = false;
  __device__ static void load(const RowRef& w, int64_t row, int64_t u, quant::KUnitLevels& l) {
    const int64_t block = u / 8;
    const uint8_t* b = w.data + row * w.row_bytes + block * 208;
    const int j = static_cast<int>(u % 8);
    uint32_t lw[8], hw[8];
    load_words16(b + 64 * (j / 4) + 32 * (j % 2), lw);
    load_words16(b + 128 + 32 * (j / 4), hw);
    const uint16_t sc = __ldg(reinterpret_cast<const unsigned short*>(b + 192) + j);
    const float d = h2f(__ldg(reinterpret_cast<const unsigned short*>(w.scales + row * w.scale_row_bytes) + block));
    quant::q6k_unit(lw, hw, j, static_cast<int8_t>(sc & 0xFF), static_cast<int8_t>(sc >> 8), d, l);
  }
};

constexpr bool has_k_levels(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

}  // namespace tern::cuda
