// A matmul's input as the CPU backend (and ggml) rounds it before a weight type's dot products
// (quant::vec_dot_type): f32 as is, f16/bf16, or 8-bit blocks. Q8_0/Q8_1 cover 32 elements (d =
// amax/127 kept as its f16 value, levels rounded to nearest even; Q8_1 also d * sum as f16), Q8_K
// 256 (f32 d from the signed maximum): kernels_x86.inc's quantize_act_q8 and the reference's Q8K
// encode, operation for operation, so that the GPU's dot products see the CPU's levels and scales.
//
// A separate launch rounds a matmul's input once (quantize_activation in activations.cu), or the
// element-wise op that writes the input rounds it on the way (round_into); every GEMV block then
// loads the rounded units it needs. (Rounding inside each GEMV block instead saved
// the launch but cost more than it saved on an H200: every block redid the work, and f16/bf16
// inputs loaded as f32 doubled the activation traffic.)
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backends/cuda/kernels/decode.cuh"
#include "backends/cuda/kernels/launch.h"

namespace tern::cuda {

// Unit u of a token as floats (F32, F16, BF16 inputs).
struct FloatAct {
  float v[32];
};
// Unit u of a token as levels (Q8_0, Q8_1, Q8_K), with its block's scale (and Q8_1's scaled sum).
struct ByteAct {
  uint32_t q[8];
  float d, s;
};

// One 32-element unit by one thread (Q8_0, Q8_1).
template <bool kSum>
__device__ void quantize_q8_unit(const float* __restrict__ x, int8_t* q, float* d, float* s) {
  float v[32];
  const auto* p = reinterpret_cast<const float4*>(x);
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const float4 f = p[k];
    v[4 * k] = f.x, v[4 * k + 1] = f.y, v[4 * k + 2] = f.z, v[4 * k + 3] = f.w;
  }
  float amax = 0.0f;
#pragma unroll
  for (int e = 0; e < 32; ++e) amax = fmaxf(amax, fabsf(v[e]));
  const float dd = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  int sum = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int l = __float2int_rn(__fmul_rn(v[4 * k + j], id));
      sum += l;
      word |= (static_cast<uint32_t>(l) & 0xFF) << (8 * j);
    }
    reinterpret_cast<uint32_t*>(q)[k] = word;
  }
  *d = __half2float(__float2half_rn(dd));
  if (kSum) *s = __half2float(__float2half_rn(__fmul_rn(dd, static_cast<float>(sum))));
}

// One 256-element block by one warp (Q8_K): the element of largest magnitude (the first such, as
// the reference's scan finds it) sets iscale = -127 / max.
__device__ inline void quantize_q8k_block(const float* __restrict__ x, int8_t* q, float* d, int lane) {
  float v[8];
  float amax = 0.0f, mx = 0.0f;
  int at = 1 << 30;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    v[j] = x[lane * 8 + j];
    if (fabsf(v[j]) > amax) amax = fabsf(v[j]), mx = v[j], at = lane * 8 + j;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float a2 = __shfl_xor_sync(0xffffffffu, amax, o), m2 = __shfl_xor_sync(0xffffffffu, mx, o);
    const int at2 = __shfl_xor_sync(0xffffffffu, at, o);
    if (a2 > amax || (a2 == amax && at2 < at)) amax = a2, mx = m2, at = at2;
  }
  if (amax == 0.0f) {  // the reference leaves the zero-initialised block
#pragma unroll
    for (int j = 0; j < 8; ++j) q[lane * 8 + j] = 0;
    if (lane == 0) *d = 0.0f;
    return;
  }
  const float iscale = -127.0f / mx;
#pragma unroll
  for (int j = 0; j < 8; ++j) q[lane * 8 + j] = static_cast<int8_t>(min(127, __float2int_rn(__fmul_rn(iscale, v[j]))));
  if (lane == 0) *d = 1.0f / iscale;
}

// Element i of token t's row, rounded into `a` as it is written by an element-wise op (RMSNorm,
// SwiGLU), so that the matmul after it needs no rounding launch of its own. Called by all 32 lanes
// of a warp at once, lane l holding element 32k + l of one unit (8-bit types: the unit's maximum and
// sum are warp reductions). The arithmetic is quantize_q8_unit's, so the levels and scales are the
// same bits as quantize_activation's. F32: nothing to write.
__device__ __forceinline__ void round_into(const Activation& a, int64_t t, int64_t i, float v) {
  const int64_t k = t * a.n_in + i;
  switch (a.type) {
    case DType::F16: static_cast<__half*>(const_cast<void*>(a.q))[k] = __float2half_rn(v); return;
    case DType::BF16: static_cast<__nv_bfloat16*>(const_cast<void*>(a.q))[k] = __float2bfloat16_rn(v); return;
    case DType::Q8_0:
    case DType::Q8_1: {
      float amax = fabsf(v);
      for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      const float dd = amax / 127.0f;
      const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
      const int l = __float2int_rn(__fmul_rn(v, id));
      static_cast<int8_t*>(const_cast<void*>(a.q))[k] = static_cast<int8_t>(l);
      const int64_t unit = k / 32;
      if (a.type == DType::Q8_1) {
        int sum = l;
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (i % 32 == 0) const_cast<float*>(a.s)[unit] = __half2float(__float2half_rn(__fmul_rn(dd, static_cast<float>(sum))));
      }
      if (i % 32 == 0) const_cast<float*>(a.d)[unit] = __half2float(__float2half_rn(dd));
      return;
    }
    default: return;
  }
}

// SwiGLU of one element, silu(g) * u, with the reference's operations (elementwise.cu's swiglu and
// the GEMV that applies it to its gate and up rows: the same bits).
__device__ __forceinline__ float swiglu_value(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// Unit u of token t of an 8-bit activation (Q8_0, Q8_1: a scale per unit; Q8_K: per 256).
template <int kGroup>
__device__ __forceinline__ void load_act(const Activation& a, int64_t t, int64_t u, ByteAct& x) {
  const auto* p = reinterpret_cast<const uint4*>(static_cast<const int8_t*>(a.q) + t * a.n_in) + 2 * u;
  const uint4 lo = __ldg(p), hi = __ldg(p + 1);
  x.q[0] = lo.x, x.q[1] = lo.y, x.q[2] = lo.z, x.q[3] = lo.w, x.q[4] = hi.x, x.q[5] = hi.y, x.q[6] = hi.z, x.q[7] = hi.w;
  x.d = __ldg(a.d + t * (a.n_in / kGroup) + (u * 32) / kGroup);
  x.s = a.s ? __ldg(a.s + t * (a.n_in / 32) + u) : 0.0f;
}

// Unit u of token t of an f32 activation, or of an f16/bf16 one (stored 16-bit, decoded like an
// F16/BF16 weight row).
template <DType A>
__device__ __forceinline__ void load_act(const Activation& a, int64_t t, int64_t u, FloatAct& x) {
  if constexpr (A == DType::F32) {
    const auto* p = reinterpret_cast<const float4*>(static_cast<const float*>(a.q) + t * a.n_in) + 8 * u;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float4 f = __ldg(p + k);
      x.v[4 * k] = f.x, x.v[4 * k + 1] = f.y, x.v[4 * k + 2] = f.z, x.v[4 * k + 3] = f.w;
    }
  } else {
    const RowRef r{static_cast<const uint8_t*>(a.q), nullptr, a.n_in / 32, a.n_in * 2, 0};
    Unit<A, false>::decode(r, t, u, x.v);
  }
}

// --- one unit's dot product, as the reference's vec_dot for the pair of types -------------------

// Legacy weights against Q8_0/Q8_1: an exact integer sum of level products, then the two scales
// (and the min times the activation's scaled sum), as ggml's vec_dot_q4_0_q8_0 and relatives.
template <bool kAffine>
__device__ __forceinline__ float dot_unit(const Levels& w, const ByteAct& a) {
  int sumi = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) sumi = __dp4a(static_cast<int>(w.q[k]), static_cast<int>(a.q[k]), sumi);
  const float dd = __fmul_rn(w.d, a.d);
  return kAffine ? __fadd_rn(__fmul_rn(dd, static_cast<float>(sumi)), __fmul_rn(w.m, a.s))
                 : __fmul_rn(dd, static_cast<float>(sumi));
}

// Decoded weights against float activations.
__device__ __forceinline__ float dot_unit(const float (&w)[32], const FloatAct& a) {
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < 32; ++e) s = fmaf(w[e], a.v[e], s);
  return s;
}

// Decoded K-quant weights against Q8_K: the activation decoded as d * level (the reference's
// dot_decoded).
__device__ __forceinline__ float dot_unit(const float (&w)[32], const ByteAct& a) {
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < 32; ++e) {
    const float x = __fmul_rn(a.d, static_cast<float>(static_cast<int8_t>((a.q[e / 4] >> (8 * (e % 4))) & 0xFF)));
    s = fmaf(w[e], x, s);
  }
  return s;
}

}  // namespace tern::cuda
