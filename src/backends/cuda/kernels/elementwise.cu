// Element-wise ops of the Llama path: RMSNorm (with the residual add before it), RoPE (q and k in one
// launch), SwiGLU, residual add, KV stores (k and v in one launch), conversions. The norms and
// SwiGLU may also write their output rounded for the matmul after them (activation.cuh, round_into):
// a decode step then launches no rounding kernels of its own.
// RoPE and the KV stores after it are also one launch (rope_store).
// Each follows the scalar reference's arithmetic (src/ops/ref) step for step where that is cheap
// (RoPE's angle recurrence and fma pattern), so the GPU's q and k match the CPU's closely. Every
// kernel is launched to overlap the one before it (dependent_launch.cuh) and begins by releasing its
// successor and waiting for its inputs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backends/cuda/kernels/activation.cuh"
#include "backends/cuda/kernels/dependent_launch.cuh"

namespace tern::cuda {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n, int threads = kThreads) { return static_cast<int>((n + threads - 1) / threads); }

__device__ float block_sum(float v) {
  __shared__ float partial[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < blockDim.x / 32 ? partial[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One block per row. kAdd: x += d first (written back), the residual add before the norm. `rounded`
// (type F32: none) also receives the output rounded for the matmul that reads it next. A thread
// keeps its first kNormHeld elements (and their weights) in registers: the weights, which no kernel
// writes, are loaded before the wait for the inputs (their latency overlaps the kernel before), and
// after the barrier nothing is read from memory again. Elements beyond kNormHeld per thread (rows
// longer than 4 x 1024) take the loops below the held ones. The arithmetic, and the order of the
// sum, are those of one loop over the row.
constexpr int kNormHeld = 4;

template <bool kAdd>
__global__ void rms_norm_kernel(float* x, const float* d, const float* w, float* out, int64_t n, float eps,
                                Activation rounded) {
  release_dependents();
  const int64_t bd = blockDim.x, held = kNormHeld * bd;
  float wv[kNormHeld], xv[kNormHeld];
#pragma unroll
  for (int j = 0; j < kNormHeld; ++j) {
    const int64_t i = threadIdx.x + j * bd;
    wv[j] = i < n ? w[i] : 0.0f;
  }
  wait_for_inputs();
  float* xr = x + blockIdx.x * n;
  float* o = out + blockIdx.x * n;
  // All of d's row is read before the barrier in block_sum: out may alias d.
  const float* dr = kAdd ? d + blockIdx.x * n : nullptr;
  float ss = 0;
#pragma unroll
  for (int j = 0; j < kNormHeld; ++j) {
    const int64_t i = threadIdx.x + j * bd;
    if (i >= n) break;
    float v = xr[i];
    if constexpr (kAdd) {
      v += dr[i];
      xr[i] = v;
    }
    xv[j] = v;
    ss += v * v;
  }
  for (int64_t i = threadIdx.x + held; i < n; i += bd) {
    float v = xr[i];
    if constexpr (kAdd) {
      v += dr[i];
      xr[i] = v;
    }
    ss += v * v;
  }
  ss = block_sum(ss);
  const float scale = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
#pragma unroll
  for (int j = 0; j < kNormHeld; ++j) {
    const int64_t i = threadIdx.x + j * bd;
    if (i >= n) break;
    const float v = (xv[j] * scale) * wv[j];
    o[i] = v;
    round_into(rounded, blockIdx.x, i, v);
  }
  for (int64_t i = threadIdx.x + held; i < n; i += bd) {
    const float v = (xr[i] * scale) * w[i];
    o[i] = v;
    round_into(rounded, blockIdx.x, i, v);
  }
}

// Elements i0 and i1 of a row and their values.
struct Pair {
  int i0, i1;
  float a, b;
};

// Rotates pair i of (head, token) ht of x, rows of d floats: theta_i = pos * scale^i, stepped by
// float multiplication as the reference (and ggml) does. Returns the rotated pair.
__device__ __forceinline__ Pair rope_pair(float* x, int64_t ht, int i, int64_t d, int half, float pos,
                                          float theta_scale, bool neox) {
  float theta = pos;
  for (int k = 0; k < i; ++k) theta *= theta_scale;
  float s, c;
  sincosf(theta, &s, &c);
  float* v = x + ht * d;
  const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
  const float a = v[i0], b = v[i1];
  const Pair r{i0, i1, fmaf(a, c, -(b * s)), fmaf(a, s, b * c)};
  v[i0] = r.a;
  v[i1] = r.b;
  return r;
}

// One thread per rotated pair (i, head, token) of q [d, q_heads, T], then of k [d, k_heads, T]
// (k_heads 0: q alone).
__global__ void rope_kernel(float* q, float* k, const int32_t* pos, int64_t d, int64_t q_heads, int64_t k_heads,
                            int64_t T, int half, float theta_scale, bool neox) {
  release_dependents();
  wait_for_inputs();
  int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t n_q = half * q_heads * T;
  float* x = q;
  int64_t heads = q_heads;
  if (idx >= n_q) {
    idx -= n_q, x = k, heads = k_heads;
    if (idx >= half * k_heads * T) return;
  }
  const int64_t ht = idx / half;  // head + heads * token
  rope_pair(x, ht, static_cast<int>(idx % half), d, half, static_cast<float>(pos[ht / heads]), theta_scale, neox);
}

// One thread per element; `rounded` as in rms_norm_kernel, rows of rounded.n_in elements.
__global__ void swiglu_kernel(const float* g, const float* u, float* out, int64_t n, Activation rounded) {
  release_dependents();
  wait_for_inputs();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float v = swiglu_value(g[i], u[i]);
  out[i] = v;
  if (rounded.type != DType::F32) round_into(rounded, i / rounded.n_in, i % rounded.n_in, v);
}

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  release_dependents();
  wait_for_inputs();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

template <class T>
__device__ T convert(float v);
template <>
__device__ __half convert<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __nv_bfloat16 convert<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ float convert<float>(float v) { return v; }

// One thread per element of src [d, heads, T], then (src2, cache2 set: a layer's V after its K) of
// src2, same shape.
template <class T>
__global__ void kv_store_kernel(const float* src, T* cache, const float* src2, T* cache2, const int32_t* slots,
                                int64_t d, int64_t heads, int64_t T_) {
  release_dependents();
  wait_for_inputs();
  int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t n = d * heads * T_;
  if (idx >= n) {
    if (!src2 || idx >= 2 * n) return;
    idx -= n, src = src2, cache = cache2;
  }
  const int64_t t = idx / (d * heads), rest = idx % (d * heads);
  cache[static_cast<int64_t>(slots[t]) * d * heads + rest] = convert<T>(src[idx]);
}

// RoPE on q and k, and k and v stored into their caches, in one launch: one thread per rotated
// pair of q (half per head and token), then per pair of elements of k and of v (d / 2 per head and
// token; k's first half rotated first, its elements past n_rot stored as they are). The rotation is
// rope_kernel's and the conversion kv_store_kernel's, so the bits are those of the two launches.
template <class T>
__global__ void rope_store_kernel(float* q, float* k, const float* v, const int32_t* pos, T* k_cache, T* v_cache,
                                  const int32_t* slots, int64_t d, int64_t q_heads, int64_t k_heads, int64_t T_,
                                  int half, float theta_scale, bool neox) {
  release_dependents();
  wait_for_inputs();
  int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t n_q = half * q_heads * T_, pairs = d / 2, n_kv = pairs * k_heads * T_;
  if (idx < n_q) {
    const int64_t ht = idx / half;
    rope_pair(q, ht, static_cast<int>(idx % half), d, half, static_cast<float>(pos[ht / q_heads]), theta_scale, neox);
    return;
  }
  idx -= n_q;
  const bool is_v = idx >= n_kv;
  if (is_v) idx -= n_kv;
  if (idx >= n_kv) return;
  const int64_t ht = idx / pairs, t = ht / k_heads;  // ht: head + k_heads * token
  const int j = static_cast<int>(idx % pairs);
  Pair p;
  if (is_v) {
    p = {2 * j, 2 * j + 1, v[ht * d + 2 * j], v[ht * d + 2 * j + 1]};
  } else if (j < half) {
    p = rope_pair(k, ht, j, d, half, static_cast<float>(pos[t]), theta_scale, neox);
  } else {
    const int e = 2 * half + 2 * (j - half);  // past the rotated elements
    p = {e, e + 1, k[ht * d + e], k[ht * d + e + 1]};
  }
  T* row = (is_v ? v_cache : k_cache) + static_cast<int64_t>(slots[t]) * d * k_heads + (ht % k_heads) * d;
  row[p.i0] = convert<T>(p.a);
  row[p.i1] = convert<T>(p.b);
}

template <class T>
__global__ void convert_kernel(const float* x, T* out, int64_t n) {
  release_dependents();
  wait_for_inputs();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = convert<T>(x[i]);
}

}  // namespace

namespace {

unsigned norm_threads(int64_t n) { return n >= 1024 ? 1024 : 256; }

}  // namespace

void rms_norm(const float* x, const float* w, float* out, int64_t n, int64_t rows, float eps,
              const Activation& rounded, cudaStream_t s) {
  if (rows == 0) return;
  launch_dependent("rms_norm", rms_norm_kernel<false>, static_cast<unsigned>(rows), norm_threads(n), 0, s,
                   const_cast<float*>(x), static_cast<const float*>(nullptr), w, out, n, eps, rounded);
}

void add_rms_norm(float* x, const float* d, const float* w, float* out, int64_t n, int64_t rows, float eps,
                  const Activation& rounded, cudaStream_t s) {
  if (rows == 0) return;
  launch_dependent("add_rms_norm", rms_norm_kernel<true>, static_cast<unsigned>(rows), norm_threads(n), 0, s, x, d, w,
                   out, n, eps, rounded);
}

void rope(float* q, float* k, const int32_t* pos, int64_t d, int64_t q_heads, int64_t k_heads, int64_t T, int n_rot,
          float theta_scale, bool neox, cudaStream_t s) {
  const int half = n_rot / 2;
  const int64_t n = half * (q_heads + k_heads) * T;
  if (n == 0) return;
  launch_dependent("rope", rope_kernel, blocks_for(n), kThreads, 0, s, q, k, pos, d, q_heads, k_heads, T, half,
                   theta_scale, neox);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n, const Activation& rounded, cudaStream_t s) {
  if (n == 0) return;
  launch_dependent("swiglu", swiglu_kernel, blocks_for(n), kThreads, 0, s, gate, up, out, n, rounded);
}

void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  launch_dependent("add", add_kernel, blocks_for(n), kThreads, 0, s, a, b, out, n);
}

void kv_store(const float* src, void* cache, const float* src2, void* cache2, DType cache_type, const int32_t* slots,
              int64_t d, int64_t heads, int64_t T, cudaStream_t s) {
  const int64_t n = d * heads * T * (src2 ? 2 : 1);
  if (n == 0) return;
  if (cache_type == DType::F16)
    launch_dependent("kv_store", kv_store_kernel<__half>, blocks_for(n), kThreads, 0, s, src, static_cast<__half*>(cache),
                     src2, static_cast<__half*>(cache2), slots, d, heads, T);
  else
    launch_dependent("kv_store", kv_store_kernel<float>, blocks_for(n), kThreads, 0, s, src, static_cast<float*>(cache),
                     src2, static_cast<float*>(cache2), slots, d, heads, T);
}

void rope_store(float* q, float* k, const float* v, const int32_t* pos, void* k_cache, void* v_cache, DType cache_type,
                const int32_t* slots, int64_t d, int64_t q_heads, int64_t k_heads, int64_t T, int n_rot,
                float theta_scale, bool neox, cudaStream_t s) {
  const int half = n_rot / 2;
  const int64_t n = half * q_heads * T + d * k_heads * T;
  if (n == 0) return;
  if (cache_type == DType::F16)
    launch_dependent("rope_store", rope_store_kernel<__half>, blocks_for(n), kThreads, 0, s, q, k, v, pos,
                     static_cast<__half*>(k_cache), static_cast<__half*>(v_cache), slots, d, q_heads, k_heads, T, half,
                     theta_scale, neox);
  else
    launch_dependent("rope_store", rope_store_kernel<float>, blocks_for(n), kThreads, 0, s, q, k, v, pos,
                     static_cast<float*>(k_cache), static_cast<float*>(v_cache), slots, d, q_heads, k_heads, T, half,
                     theta_scale, neox);
}

void f32_to_f16(const float* x, void* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  launch_dependent("f32_to_f16", convert_kernel<__half>, blocks_for(n), kThreads, 0, s, x, static_cast<__half*>(out), n);
}

void f32_to_bf16(const float* x, void* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  launch_dependent("f32_to_bf16", convert_kernel<__nv_bfloat16>, blocks_for(n), kThreads, 0, s, x,
                   static_cast<__nv_bfloat16*>(out), n);
}

}  // namespace tern::cuda
