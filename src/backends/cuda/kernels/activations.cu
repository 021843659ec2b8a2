// Rounding a matmul's input on the device once per launch group, exactly as the CPU backend does
// (activation.cuh has the per-unit arithmetic).
#include "backends/cuda/kernels/activation.cuh"
#include "backends/cuda/kernels/dependent_launch.cuh"

namespace tern::cuda {
namespace {

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

template <bool kSum>
__global__ void quantize_q8_kernel(const float* __restrict__ x, int64_t n_units, int8_t* q, float* d, float* s) {
  release_dependents();
  wait_for_inputs();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n_units) quantize_q8_unit<kSum>(x + i * 32, q + i * 32, d + i, kSum ? s + i : nullptr);
}

__global__ void quantize_q8k_kernel(const float* __restrict__ x, int64_t n_blocks, int8_t* q, float* d) {
  release_dependents();
  wait_for_inputs();
  const int64_t b = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (b < n_blocks) quantize_q8k_block(x + b * 256, q + b * 256, d + b, static_cast<int>(threadIdx.x % 32));
}

__device__ __forceinline__ void round16(float v, __half& out) { out = __float2half_rn(v); }
__device__ __forceinline__ void round16(float v, __nv_bfloat16& out) { out = __float2bfloat16_rn(v); }

template <class T>
__global__ void round16_kernel(const float* __restrict__ x, T* __restrict__ out, int64_t n) {
  release_dependents();
  wait_for_inputs();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) round16(x[i], out[i]);
}

unsigned blocks(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

size_t activation_bytes(DType type, int64_t n_in, int64_t n_tok) {
  const size_t n = static_cast<size_t>(n_in * n_tok);
  switch (type) {
    case DType::F16:
    case DType::BF16: return align256(2 * n);
    case DType::Q8_0: return align256(n) + align256(n / 32 * 4);
    case DType::Q8_1: return align256(n) + 2 * align256(n / 32 * 4);
    case DType::Q8_K: return align256(n) + align256(n / 256 * 4);
    default: return 0;
  }
}

Activation activation_view(DType type, const float* x, int64_t n_in, int64_t n_tok, void* scratch) {
  Activation a{.type = type, .q = x, .n_in = n_in};
  if (type == DType::F32) return a;
  const size_t n = static_cast<size_t>(n_in * n_tok);
  auto* base = static_cast<uint8_t*>(scratch);
  a.q = base;
  if (type == DType::Q8_0 || type == DType::Q8_1 || type == DType::Q8_K)
    a.d = reinterpret_cast<const float*>(base + align256(n));
  if (type == DType::Q8_1) a.s = reinterpret_cast<const float*>(base + align256(n) + align256(n / 32 * 4));
  return a;
}

void quantize_activation(const Activation& a, const float* x, int64_t n_tok, cudaStream_t s) {
  const int64_t n = a.n_in * n_tok;
  auto* q = static_cast<int8_t*>(const_cast<void*>(a.q));
  auto* d = const_cast<float*>(a.d);
  const char* what = "quantize_activation";
  switch (a.type) {
    case DType::F32: return;
    case DType::F16:
      launch_dependent(what, round16_kernel<__half>, blocks(n, 256), 256, 0, s, x, reinterpret_cast<__half*>(q), n);
      break;
    case DType::BF16:
      launch_dependent(what, round16_kernel<__nv_bfloat16>, blocks(n, 256), 256, 0, s, x,
                       reinterpret_cast<__nv_bfloat16*>(q), n);
      break;
    case DType::Q8_0:
      launch_dependent(what, quantize_q8_kernel<false>, blocks(n / 32, 128), 128, 0, s, x, n / 32, q, d,
                       static_cast<float*>(nullptr));
      break;
    case DType::Q8_1:
      launch_dependent(what, quantize_q8_kernel<true>, blocks(n / 32, 128), 128, 0, s, x, n / 32, q, d,
                       const_cast<float*>(a.s));
      break;
    case DType::Q8_K: launch_dependent(what, quantize_q8k_kernel, blocks(n / 256, 4), 128, 0, s, x, n / 256, q, d); break;
    default: check(cudaErrorInvalidValue, "quantize_activation: not an activation type");
  }
}

}  // namespace tern::cuda
