// Device decoders of the weight formats: unit u (elements 32u .. 32u + 31) of a row into 32 floats,
// with the reference decoders' arithmetic (src/quant/quant_legacy.cpp, quant_k.cpp). The file's
// layout is read with 2-byte loads (GGUF blocks are only 2-byte aligned); the split layout of
// Q4_0/Q4_1/Q8_0 (launch.h) with one aligned 16- or 32-byte load of quants per unit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/dtype.h"

namespace tern::cuda {

__device__ __forceinline__ float h2f(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
__device__ __forceinline__ uint16_t ld16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }
__device__ __forceinline__ uint32_t ld32_2(const uint8_t* p) {  // 4 bytes at a 2-byte aligned address
  return static_cast<uint32_t>(ld16(p)) | (static_cast<uint32_t>(ld16(p + 2)) << 16);
}

// Byte b (0..15) of a 16-byte vector.
__device__ __forceinline__ uint32_t byte_of(const uint4& v, int b) {
  const uint32_t w = b < 4 ? v.x : b < 8 ? v.y : b < 12 ? v.z : v.w;
  return (w >> (8 * (b % 4))) & 0xFF;
}

// Where a weight's rows are and how long they are, for the decoders.
struct RowRef {
  const uint8_t* data;    // file layout: the rows; split layout: the quants
  const uint8_t* scales;  // split layout: the scales (f16 d, or d and m pairs), unit after unit
  int64_t n_units;        // 32-element units per row
  int64_t row_bytes;      // file layout
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

template <>
struct Unit<DType::F16, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const auto* p = reinterpret_cast<const uint4*>(w.data + row * w.row_bytes) + 4 * u;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint4 v = __ldg(p + k);
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
        y[8 * k + 2 * i] = f.x, y[8 * k + 2 * i + 1] = f.y;
      }
    }
  }
};

template <>
struct Unit<DType::BF16, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const auto* p = reinterpret_cast<const uint4*>(w.data + row * w.row_bytes) + 4 * u;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint4 v = __ldg(p + k);
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        y[8 * k + 2 * i] = __uint_as_float(words[i] << 16);
        y[8 * k + 2 * i + 1] = __uint_as_float(words[i] & 0xFFFF0000u);
      }
    }
  }
};

// --- legacy 32-element blocks ------------------------------------------------------------------

template <>
struct Unit<DType::Q4_0, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const uint8_t* b = w.data + row * w.row_bytes + u * 18;
    const float d = h2f(ld16(b));
#pragma unroll
    for (int j = 0; j < 16; j += 2) {
      const uint32_t q = ld16(b + 2 + j);
      y[j] = (static_cast<int>(q & 0xF) - 8) * d;
      y[j + 1] = (static_cast<int>((q >> 8) & 0xF) - 8) * d;
      y[j + 16] = (static_cast<int>((q >> 4) & 0xF) - 8) * d;
      y[j + 17] = (static_cast<int>((q >> 12) & 0xF) - 8) * d;
    }
  }
};

template <>
struct Unit<DType::Q4_1, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const uint8_t* b = w.data + row * w.row_bytes + u * 20;
    const float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
#pragma unroll
    for (int j = 0; j < 16; j += 2) {
      const uint32_t q = ld16(b + 4 + j);
      y[j] = static_cast<float>(q & 0xF) * d + m;
      y[j + 1] = static_cast<float>((q >> 8) & 0xF) * d + m;
      y[j + 16] = static_cast<float>((q >> 4) & 0xF) * d + m;
      y[j + 17] = static_cast<float>((q >> 12) & 0xF) * d + m;
    }
  }
};

// Q5_0 / Q5_1: the fifth bit of element e is bit e of qh.
template <bool kAffine>
__device__ void decode_q5(const uint8_t* b, float (&y)[32]) {
  const float d = h2f(ld16(b));
  const float m = kAffine ? h2f(ld16(b + 2)) : 0.0f;
  const uint8_t* qhp = b + (kAffine ? 4 : 2);
  const uint32_t qh = ld32_2(qhp);
  const uint8_t* qs = qhp + 4;
#pragma unroll
  for (int j = 0; j < 16; j += 2) {
    const uint32_t q = ld16(qs + j);
    const int l0 = static_cast<int>((q & 0xF) | (((qh >> j) & 1) << 4));
    const int l1 = static_cast<int>(((q >> 8) & 0xF) | (((qh >> (j + 1)) & 1) << 4));
    const int h0 = static_cast<int>(((q >> 4) & 0xF) | (((qh >> (j + 16)) & 1) << 4));
    const int h1 = static_cast<int>(((q >> 12) & 0xF) | (((qh >> (j + 17)) & 1) << 4));
    if (kAffine) {
      y[j] = l0 * d + m, y[j + 1] = l1 * d + m, y[j + 16] = h0 * d + m, y[j + 17] = h1 * d + m;
    } else {
      y[j] = (l0 - 16) * d, y[j + 1] = (l1 - 16) * d, y[j + 16] = (h0 - 16) * d, y[j + 17] = (h1 - 16) * d;
    }
  }
}

template <>
struct Unit<DType::Q5_0, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    decode_q5<false>(w.data + row * w.row_bytes + u * 22, y);
  }
};

template <>
struct Unit<DType::Q5_1, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    decode_q5<true>(w.data + row * w.row_bytes + u * 24, y);
  }
};

template <>
struct Unit<DType::Q8_0, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const uint8_t* b = w.data + row * w.row_bytes + u * 34;
    const float d = h2f(ld16(b));
#pragma unroll
    for (int j = 0; j < 32; j += 2) {
      const uint32_t q = ld16(b + 2 + j);
      y[j] = static_cast<float>(static_cast<int8_t>(q & 0xFF)) * d;
      y[j + 1] = static_cast<float>(static_cast<int8_t>(q >> 8)) * d;
    }
  }
};

// --- split layouts: quants of all units first (row-major), then the scales ----------------------

template <>
struct Unit<DType::Q4_0, true> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const int64_t i = row * w.n_units + u;
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(w.data) + i);
    const float d = h2f(__ldg(reinterpret_cast<const unsigned short*>(w.scales) + i));
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const uint32_t b = byte_of(q, j);
      y[j] = (static_cast<int>(b & 0xF) - 8) * d;
      y[j + 16] = (static_cast<int>(b >> 4) - 8) * d;
    }
  }
};

template <>
struct Unit<DType::Q4_1, true> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const int64_t i = row * w.n_units + u;
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(w.data) + i);
    const uint32_t dm = __ldg(reinterpret_cast<const unsigned int*>(w.scales) + i);
    const float d = h2f(static_cast<uint16_t>(dm & 0xFFFF)), m = h2f(static_cast<uint16_t>(dm >> 16));
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const uint32_t b = byte_of(q, j);
      y[j] = static_cast<float>(b & 0xF) * d + m;
      y[j + 16] = static_cast<float>(b >> 4) * d + m;
    }
  }
};

template <>
struct Unit<DType::Q8_0, true> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const int64_t i = row * w.n_units + u;
    const uint4 q0 = __ldg(reinterpret_cast<const uint4*>(w.data) + 2 * i);
    const uint4 q1 = __ldg(reinterpret_cast<const uint4*>(w.data) + 2 * i + 1);
    const float d = h2f(__ldg(reinterpret_cast<const unsigned short*>(w.scales) + i));
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(static_cast<int8_t>(byte_of(q0, j))) * d;
      y[j + 16] = static_cast<float>(static_cast<int8_t>(byte_of(q1, j))) * d;
    }
  }
};

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

__device__ __forceinline__ int q3k_scale(int j, const uint8_t* s) {
  const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
  return lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

template <>
struct Unit<DType::Q3_K, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const uint8_t* b = w.data + row * w.row_bytes + (u / 8) * 110;
    const int j = static_cast<int>(u % 8), shift = 2 * (j % 4);
    const float d_all = h2f(ld16(b + 108));
    const uint8_t* qs = b + 32 + (j / 4) * 32;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float dl = d_all * static_cast<float>(q3k_scale(2 * j + h, b + 96) - 32);
#pragma unroll
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * h + l;
        const int hbit = (b[e] >> j) & 1;
        y[e] = dl * static_cast<float>(((qs[e] >> shift) & 3) - (hbit ? 0 : 4));
      }
    }
  }
};

__device__ __forceinline__ void k4_scale_min(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

template <bool kFive>
__device__ void decode_affine_k(const uint8_t* b, int j, float (&y)[32]) {
  const float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
  int sc, m;
  k4_scale_min(j, b + 4, sc, m);
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

template <>
struct Unit<DType::Q6_K, false> {
  __device__ static void decode(const RowRef& w, int64_t row, int64_t u, float (&y)[32]) {
    const uint8_t* b = w.data + row * w.row_bytes + (u / 8) * 210;
    const int j = static_cast<int>(u % 8), half = j / 4, jj = j % 4;
    const float d = h2f(ld16(b + 208));
    const uint8_t* ql = b + half * 64 + 32 * (jj & 1);
    const uint8_t* qh = b + 128 + half * 32;
    const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      const int q = (((ql[l] >> (4 * (jj >> 1))) & 0xF) | (((qh[l] >> (2 * jj)) & 3) << 4)) - 32;
      y[l] = d * static_cast<float>(scales[(32 * j + l) / 16]) * static_cast<float>(q);
    }
  }
};

}  // namespace tern::cuda
