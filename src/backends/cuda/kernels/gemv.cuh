// What the two GEMV kernels share: the arguments of a launch (up to three weights over one input,
// or gate and up for SwiGLU), locating a row among them, and writing a row pair's finished sums.
// gemv_kernel (matmul.cu) holds each thread's units in registers; gemv_stream_kernel
// (gemv_stream.cu) streams whole rows through shared memory. Both sum a row's 32-element units in
// the same order for a row of up to 64 units (lane l: units l, l + 32), so their bits agree there.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/kernels/activation.cuh"
#include "backends/cuda/kernels/decode.cuh"
#include "backends/cuda/kernels/launch.h"

namespace tern::cuda {

// Rows a warp works on at once: two rows of one launch, or row j of gate and of up (SwiGLU).
constexpr int kRowsPerWarp = 2;

// The activation form a weight type's dot products take (quant::vec_dot_type).
constexpr DType act_type(DType t) {
  switch (t) {
    case DType::F32: return DType::F32;
    case DType::F16: return DType::F16;
    case DType::BF16: return DType::BF16;
    case DType::Q4_1:
    case DType::Q5_1: return DType::Q8_1;
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0: return DType::Q8_0;
    default: return DType::Q8_K;
  }
}

// The weights of one launch: rows [row0[i], row0[i] + n_out[i]) of the concatenation are weight i's.
struct GemvArgs {
  RowRef w[kMaxGemvWeights];
  float* y[kMaxGemvWeights];
  int64_t row0[kMaxGemvWeights];
  int64_t n_out[kMaxGemvWeights];
  int n = 0;
  int64_t total_rows = 0, n_units = 0;
  bool preload = true;  // weights loaded before the wait for the input
  // The SwiGLU kernels' (kGlu) rounding of their output (type F32: none).
  Activation glu_rounded;
};

struct RowOf {
  RowRef w;
  float* y;
  int64_t row, n_out;
};

// Selects with constant indices only, so the kernel parameters stay out of local memory.
__device__ __forceinline__ RowOf locate(const GemvArgs& a, int64_t row) {
  RowOf r{a.w[0], a.y[0], row, a.n_out[0]};
  if (a.n > 1 && row >= a.row0[1]) r = {a.w[1], a.y[1], row - a.row0[1], a.n_out[1]};
  if (a.n > 2 && row >= a.row0[2]) r = {a.w[2], a.y[2], row - a.row0[2], a.n_out[2]};
  return r;
}

// The rows of a warp's row pair (first row r0; SwiGLU: row r0 / 2 of gate and of up), and which
// exist (a launch of an odd number of rows leaves the last pair's second row empty).
__device__ __forceinline__ void locate_pair(const GemvArgs& a, int64_t r0, bool glu, RowOf (&rows)[kRowsPerWarp],
                                            bool (&live)[kRowsPerWarp]) {
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    live[r] = r0 + r < a.total_rows;
    const int64_t row = glu ? (r == 0 ? r0 / 2 : a.row0[1] + r0 / 2) : r0 + r;
    rows[r] = locate(a, live[r] ? row : 0);
  }
}

template <int NT>
__device__ __forceinline__ void zero(float (&acc)[kRowsPerWarp][NT]) {
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
}

// Unit u of a row pair, as levels, against tokens t0 .. t0 + nt - 1 of an 8-bit activation.
template <int NT, int kGroup, bool kAffine>
__device__ __forceinline__ void add_levels(float (&acc)[kRowsPerWarp][NT], const Levels (&lv)[kRowsPerWarp],
                                           const Activation& act, int t0, int nt, int64_t u) {
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    if (t < nt) {
      ByteAct a;
      load_act<kGroup>(act, t0 + t, u, a);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) acc[r][t] += dot_unit<kAffine>(lv[r], a);
    }
  }
}

// Unit u of a row pair of K-quants, as levels with integer scales (quant/k_unit_levels.h), against
// tokens t0 .. t0 + nt - 1 of a Q8_K activation. kMin: Q4_K/Q5_K (Q6_K has no mins).
template <int NT, bool kMin>
__device__ __forceinline__ void add_k_levels(float (&acc)[kRowsPerWarp][NT], const quant::KUnitLevels (&kl)[kRowsPerWarp],
                                             const Activation& act, int t0, int nt, int64_t u) {
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    if (t < nt) {
      ByteAct a;
      load_act<256>(act, t0 + t, u, a);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) acc[r][t] += quant::k_unit_dot<kMin>(kl[r], a.q, a.d);
    }
  }
}

// Unit u of a row pair, decoded to floats, against tokens t0 .. t0 + nt - 1 of an activation of
// type A (F32/F16/BF16, or Q8_K for the K-quants).
template <int NT, DType A>
__device__ __forceinline__ void add_floats(float (&acc)[kRowsPerWarp][NT], const float (&wv)[kRowsPerWarp][32],
                                           const Activation& act, int t0, int nt, int64_t u) {
  constexpr bool kBytes = A == DType::Q8_0 || A == DType::Q8_1 || A == DType::Q8_K;
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    if (t < nt) {
      if constexpr (kBytes) {
        ByteAct a;
        load_act<A == DType::Q8_K ? 256 : 32>(act, t0 + t, u, a);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) acc[r][t] += dot_unit(wv[r], a);
      } else {
        FloatAct a;
        load_act<A>(act, t0 + t, u, a);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) acc[r][t] += dot_unit(wv[r], a);
      }
    }
  }
}

// Each lane's partial sums of a row pair, in place, as the warp's sums (every lane gets them, bit
// for bit the same: the butterfly's order).
template <int NT>
__device__ __forceinline__ void warp_sums(float (&acc)[kRowsPerWarp][NT]) {
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][t] += __shfl_xor_sync(0xffffffffu, acc[r][t], o);
}

// A row pair's finished sums for tokens t0 .. t0 + nt - 1 into the outputs, by one thread: the two
// rows' outputs, or (kGlu) silu(gate) * up into y[0] and its rounding.
template <int NT, bool kGlu>
__device__ __forceinline__ void write_pair(const GemvArgs& a, const RowOf (&rows)[kRowsPerWarp],
                                           const bool (&live)[kRowsPerWarp], const float (&res)[kRowsPerWarp][NT],
                                           int t0, int nt) {
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    if (t >= nt) break;
    if constexpr (kGlu) {
      if (!live[0]) break;
      const float o = swiglu_value(res[0][t], res[1][t]);
      rows[0].y[(t0 + t) * rows[0].n_out + rows[0].row] = o;
      if (a.glu_rounded.type != DType::F32) round_into(a.glu_rounded, t0 + t, rows[0].row, o);
    } else {
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
        if (live[r]) rows[r].y[(t0 + t) * rows[r].n_out + rows[r].row] = res[r][t];
    }
  }
}

// gemv_stream_kernel for this launch if it takes it (weights of a split-layout legacy type,
// F16/BF16 or Q4_K/Q5_K, 8-bit or 16-bit activations, rows whose scales come in whole 16-byte
// pieces, and TERN_CUDA_STREAM=1); false otherwise, and nothing launched. (gemv_stream.cu)
bool launch_gemv_stream(const GemvArgs& args, DType type, uint8_t layout, const Activation& x, int64_t n_tok,
                        bool glu, cudaStream_t s);

}  // namespace tern::cuda
