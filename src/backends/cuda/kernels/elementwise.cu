// Element-wise ops of the Llama path: RMSNorm, RoPE, SwiGLU, residual add, KV stores, conversions.
// Each follows the scalar reference's arithmetic (src/ops/ref) step for step where that is cheap
// (RoPE's angle recurrence and fma pattern), so the GPU's q and k match the CPU's closely. Every
// kernel is launched to overlap the one before it (dependent_launch.cuh) and begins by releasing its
// successor and waiting for its inputs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

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

// One block per row.
__global__ void rms_norm_kernel(const float* x, const float* w, float* out, int64_t n, float eps) {
  release_dependents();
  wait_for_inputs();
  const float* xr = x + blockIdx.x * n;
  float* o = out + blockIdx.x * n;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss);
  const float scale = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = (xr[i] * scale) * w[i];
}

// One thread per rotated pair (i, head, token).
__global__ void rope_kernel(float* x, const int32_t* pos, int64_t d, int64_t heads, int64_t T, int half,
                            float theta_scale, bool neox) {
  release_dependents();
  wait_for_inputs();
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= half * heads * T) return;
  const int i = static_cast<int>(idx % half);
  const int64_t ht = idx / half;  // head + heads * token
  const int64_t t = ht / heads;
  // theta_i = pos * scale^i, stepped by float multiplication as the reference (and ggml) does.
  float theta = static_cast<float>(pos[t]);
  for (int k = 0; k < i; ++k) theta *= theta_scale;
  float s, c;
  sincosf(theta, &s, &c);
  float* v = x + ht * d;
  const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
  const float a = v[i0], b = v[i1];
  v[i0] = fmaf(a, c, -(b * s));
  v[i1] = fmaf(a, s, b * c);
}

__global__ void swiglu_kernel(const float* g, const float* u, float* out, int64_t n) {
  release_dependents();
  wait_for_inputs();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
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

template <class T>
__global__ void kv_store_kernel(const float* src, T* cache, const int32_t* slots, int64_t d, int64_t heads, int64_t T_) {
  release_dependents();
  wait_for_inputs();
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= d * heads * T_) return;
  const int64_t t = idx / (d * heads), rest = idx % (d * heads);
  cache[static_cast<int64_t>(slots[t]) * d * heads + rest] = convert<T>(src[idx]);
}

template <class T>
__global__ void convert_kernel(const float* x, T* out, int64_t n) {
  release_dependents();
  wait_for_inputs();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = convert<T>(x[i]);
}

}  // namespace

void rms_norm(const float* x, const float* w, float* out, int64_t n, int64_t rows, float eps, cudaStream_t s) {
  if (rows == 0) return;
  launch_dependent("rms_norm", rms_norm_kernel, static_cast<unsigned>(rows), n >= 1024 ? 1024 : 256, 0, s, x, w, out, n, eps);
}

void rope(float* x, const int32_t* pos, int64_t d, int64_t heads, int64_t T, int n_rot, float theta_scale, bool neox,
          cudaStream_t s) {
  const int half = n_rot / 2;
  const int64_t n = half * heads * T;
  if (n == 0) return;
  launch_dependent("rope", rope_kernel, blocks_for(n), kThreads, 0, s, x, pos, d, heads, T, half, theta_scale, neox);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  launch_dependent("swiglu", swiglu_kernel, blocks_for(n), kThreads, 0, s, gate, up, out, n);
}

void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  launch_dependent("add", add_kernel, blocks_for(n), kThreads, 0, s, a, b, out, n);
}

void kv_store(const float* src, void* cache, DType cache_type, const int32_t* slots, int64_t d, int64_t heads,
              int64_t T, cudaStream_t s) {
  const int64_t n = d * heads * T;
  if (n == 0) return;
  if (cache_type == DType::F16)
    launch_dependent("kv_store", kv_store_kernel<__half>, blocks_for(n), kThreads, 0, s, src, static_cast<__half*>(cache),
                     slots, d, heads, T);
  else
    launch_dependent("kv_store", kv_store_kernel<float>, blocks_for(n), kThreads, 0, s, src, static_cast<float*>(cache),
                     slots, d, heads, T);
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
