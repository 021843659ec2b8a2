// The pieces of a tensor-core attention tile shared by the prefill and decode kernels: 16-byte
// asynchronous copies global -> shared (cp.async, Ampere and later), 8x8 matrix loads from shared
// memory into mma fragments (ldmatrix), and the m16n8k16 f16 product with f32 accumulators.
#pragma once

#include <cuda_fp16.h>

#include <cfloat>
#include <cstddef>
#include <cstdint>

#ifdef TERN_CUDA_EMULATE
#include "backends/cuda/emulator/warp_matrix.h"
#endif

namespace tern::cuda {

// Halves per shared-memory row of a tile of D-element rows: 16 bytes of padding keep ldmatrix's
// eight row addresses in different banks.
template <int D>
constexpr int smem_row() {
  return D + 8;
}

#ifdef TERN_CUDA_EMULATE
// The emulator's versions (emulator/emulator.h, emulator/warp_matrix.h): the same contracts.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  emu::async_copy(smem, gmem, 16, valid ? 16 : 0);
}
__device__ __forceinline__ void cp_async_commit() { emu::async_commit(); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  emu::async_wait(N);
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const __half* p) { emu::ldmatrix_x4(r, p, false); }
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const __half* p) { emu::ldmatrix_x4(r, p, true); }
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  emu::mma_16816(c, a, b0, b1);
}
#else
// 16 bytes global -> shared without passing through registers; zeros when !valid (nothing read).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(smem))),
               "l"(gmem), "r"(valid ? 16 : 0));
}
// The "memory" clobbers keep the compiler from moving shared-memory reads of the copied data across
// the wait (or ordinary accesses across the commit).
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Returns when at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const __half* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const __half* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a b, a 16x16 (row-major fragments), b 16x8 (column-major), f16 in, f32 accumulate.
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

#endif

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Fragment addressing of an m16n8k16 tile whose 16 rows lie in shared memory, SR halves apart
// (lane = threadIdx.x % 32; mi = lane / 8 picks which 8x8 matrix a lane's row address serves).
// A (16 rows x 16 columns at column c0): ldmatrix_x4 -> the A fragment.
template <int SR>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const __half* rows, int c0, int lane) {
  const int mi = lane / 8;
  ldmatrix_x4(a, rows + ((mi & 1) * 8 + lane % 8) * SR + c0 + (mi >> 1) * 8);
}
// B = rows^T for 16 rows (n) x 16 columns (k) at column k0, as two n-tiles of 8:
// {b[0], b[1]} for rows 0-7, {b[2], b[3]} for rows 8-15 (S = Q K^T with K's rows).
template <int SR>
__device__ __forceinline__ void load_bt(uint32_t (&b)[4], const __half* rows, int k0, int lane) {
  const int mi = lane / 8;
  ldmatrix_x4(b, rows + ((mi >> 1) * 8 + lane % 8) * SR + k0 + (mi & 1) * 8);
}
// B = rows for 16 rows (k) x 16 columns (n) at column n0, as two n-tiles of 8: {b[0], b[1]} for
// columns n0 .. n0 + 7, {b[2], b[3]} for n0 + 8 .. n0 + 15 (O += P V with V's rows).
template <int SR>
__device__ __forceinline__ void load_b(uint32_t (&b)[4], const __half* rows, int n0, int lane) {
  const int mi = lane / 8;
  ldmatrix_x4_trans(b, rows + ((mi & 1) * 8 + lane % 8) * SR + n0 + (mi >> 1) * 8);
}

// The A fragment of P (16 rows x 16 keys) from two S accumulator tiles (keys 0-7 and 8-15): an
// m16n8 accumulator's layout is the A fragment's, so P never leaves registers.
__device__ __forceinline__ void p_fragment(uint32_t (&a)[4], const float (&s0)[4], const float (&s1)[4]) {
  a[0] = pack_half2(s0[0], s0[1]);
  a[1] = pack_half2(s0[2], s0[3]);
  a[2] = pack_half2(s1[0], s1[1]);
  a[3] = pack_half2(s1[2], s1[3]);
}

// One key tile of the online softmax (FlashAttention-2) for rows g and g + 8 of an m16 tile (g =
// lane / 4), whose scores s (NT n-tiles of 8 keys) are masked (-INFINITY) and scaled to log2 units:
// the running max m and this thread's part of the running sum l move on, s becomes P = 2^(s - m),
// and alpha is the factor for the outputs so far. A row's four threads agree on its max by
// shuffles. The max starts at -FLT_MAX, not -INFINITY, so that a tile of masked keys gives P = 0
// and alpha = 1 rather than NaN.
template <int NT>
__device__ __forceinline__ void online_softmax(float (&s)[NT][4], float (&m)[2], float (&l)[2], float (&alpha)[2]) {
  float tile_max[2] = {-FLT_MAX, -FLT_MAX};
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int e = 0; e < 4; ++e) tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[t][e]);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
    const float m_new = fmaxf(m[r], tile_max[r]);
    alpha[r] = exp2f(m[r] - m_new);
    m[r] = m_new;
    l[r] *= alpha[r];
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float p = exp2f(s[t][e] - m[e >> 1]);
      s[t][e] = p;
      l[e >> 1] += p;
    }
  }
}

// The accumulator tiles of rows g and g + 8 times alpha[0] and alpha[1].
template <int NT>
__device__ __forceinline__ void scale_rows(float (&o)[NT][4], const float (&alpha)[2]) {
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    o[t][0] *= alpha[0], o[t][1] *= alpha[0];
    o[t][2] *= alpha[1], o[t][3] *= alpha[1];
  }
}

// A row's sum over its four threads (at the end of the key loop).
__device__ __forceinline__ void sum_row_quads(float (&l)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
}

}  // namespace tern::cuda
