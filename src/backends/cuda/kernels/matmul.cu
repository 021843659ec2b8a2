// Weight kernels: GEMV with the dequantisation in the kernel (decode and small batches; weights
// read once per 8 tokens, f32 activations and accumulation: W4A32/W8A32 in the terms of the
// W4A16 kernels it resembles), embedding-row gathers, and dequantisation to f16 for cuBLAS.
//
// GEMV work split: a warp per output row, its lanes over the row's 32-element units (lane l takes
// units l, l + 32, ...), one partial sum per token reduced across the warp in a fixed order. A
// token's result therefore never depends on the other tokens of the batch.
#include <cstring>

#include "backends/cuda/kernels/decode.cuh"
#include "backends/cuda/kernels/launch.h"

namespace tern::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

template <class F>
void with_unit(DType t, uint8_t layout, F&& f) {
  const bool split = layout == kSplitLayout;
  switch (t) {
    case DType::F32: return f(Unit<DType::F32, false>{});
    case DType::F16: return f(Unit<DType::F16, false>{});
    case DType::BF16: return f(Unit<DType::BF16, false>{});
    case DType::Q4_0: return split ? f(Unit<DType::Q4_0, true>{}) : f(Unit<DType::Q4_0, false>{});
    case DType::Q4_1: return split ? f(Unit<DType::Q4_1, true>{}) : f(Unit<DType::Q4_1, false>{});
    case DType::Q5_0: return f(Unit<DType::Q5_0, false>{});
    case DType::Q5_1: return f(Unit<DType::Q5_1, false>{});
    case DType::Q8_0: return split ? f(Unit<DType::Q8_0, true>{}) : f(Unit<DType::Q8_0, false>{});
    case DType::Q2_K: return f(Unit<DType::Q2_K, false>{});
    case DType::Q3_K: return f(Unit<DType::Q3_K, false>{});
    case DType::Q4_K: return f(Unit<DType::Q4_K, false>{});
    case DType::Q5_K: return f(Unit<DType::Q5_K, false>{});
    case DType::Q6_K: return f(Unit<DType::Q6_K, false>{});
    default: break;
  }
  check(cudaErrorInvalidValue, "cuda backend: not a weight type");
}

// Bytes of one unit's quants and scales in the split layout.
struct SplitSizes {
  int quant_bytes, scale_bytes, block_bytes, scale_offset;
};
SplitSizes split_sizes(DType t) {
  switch (t) {
    case DType::Q4_0: return {16, 2, 18, 0};
    case DType::Q4_1: return {16, 4, 20, 0};
    case DType::Q8_0: return {32, 2, 34, 0};
    default: return {0, 0, 0, 0};
  }
}

RowRef row_ref(const Weight& w) {
  const int64_t n_units = w.n_in / 32;
  RowRef r{static_cast<const uint8_t*>(w.data), nullptr, n_units, static_cast<int64_t>(row_bytes(w.type, w.n_in))};
  if (w.layout == kSplitLayout) r.scales = r.data + w.n_out * n_units * split_sizes(w.type).quant_bytes;
  return r;
}

template <class U, int NT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_kernel(RowRef w, int64_t n_out, const float* __restrict__ x, int64_t n_in, int n_tok, float* __restrict__ y) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (row >= n_out) return;
  const int t0 = static_cast<int>(blockIdx.y) * NT;
  const int nt = min(NT, n_tok - t0);
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  for (int64_t u = lane; u < w.n_units; u += 32) {
    float wv[32];
    U::decode(w, row, u, wv);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t < nt) {
        const auto* xp = reinterpret_cast<const float4*>(x + (t0 + t) * n_in) + 8 * u;
        float s = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const float4 a = __ldg(xp + k);
          s = fmaf(wv[4 * k], a.x, s);
          s = fmaf(wv[4 * k + 1], a.y, s);
          s = fmaf(wv[4 * k + 2], a.z, s);
          s = fmaf(wv[4 * k + 3], a.w, s);
        }
        acc[t] += s;
      }
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    float v = acc[t];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0 && t < nt) y[(t0 + t) * n_out + row] = v;
  }
}

// Element i of a row of a plain float type (rows whose length is not a multiple of 32).
template <DType T>
__device__ float element(const uint8_t* row, int64_t i) {
  if constexpr (T == DType::F32) return reinterpret_cast<const float*>(row)[i];
  if constexpr (T == DType::F16) return h2f(reinterpret_cast<const uint16_t*>(row)[i]);
  if constexpr (T == DType::BF16) return __uint_as_float(static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(row)[i]) << 16);
  return 0.0f;
}

template <DType T>
__global__ void gemv_elements_kernel(const uint8_t* w, int64_t row_bytes, int64_t n_out, const float* x, int64_t n_in,
                                     int n_tok, float* y) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (row >= n_out) return;
  const uint8_t* wr = w + row * row_bytes;
  for (int t = 0; t < n_tok; ++t) {
    float s = 0.0f;
    for (int64_t i = lane; i < n_in; i += 32) s = fmaf(element<T>(wr, i), x[t * n_in + i], s);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) y[t * n_out + row] = s;
  }
}

template <class F>
void with_float_type(DType t, F&& f) {
  switch (t) {
    case DType::F32: return f(std::integral_constant<DType, DType::F32>{});
    case DType::F16: return f(std::integral_constant<DType, DType::F16>{});
    case DType::BF16: return f(std::integral_constant<DType, DType::BF16>{});
    default: check(cudaErrorInvalidValue, "cuda backend: rows of this type must be a multiple of 32 elements");
  }
}

// One thread per unit of each gathered row (blockIdx.x: the row).
template <class U>
__global__ void get_rows_kernel(RowRef w, const int32_t* ids, float* out, int64_t n_embd) {
  const int64_t u = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (u >= w.n_units) return;
  float v[32];
  U::decode(w, ids[blockIdx.x], u, v);
  auto* o = reinterpret_cast<float4*>(out + blockIdx.x * n_embd) + 8 * u;
#pragma unroll
  for (int k = 0; k < 8; ++k) o[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
}

template <DType T>
__global__ void get_rows_elements_kernel(const uint8_t* w, int64_t row_bytes, const int32_t* ids, float* out,
                                         int64_t n_embd) {
  for (int64_t i = threadIdx.x; i < n_embd; i += blockDim.x)
    out[blockIdx.x * n_embd + i] = element<T>(w + ids[blockIdx.x] * row_bytes, i);
}

// One thread per unit: 32 f16 values, four 16-byte stores.
template <class U>
__global__ void dequant_f16_kernel(RowRef w, int64_t n_out, __half* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_out * w.n_units) return;
  const int64_t row = i / w.n_units, u = i % w.n_units;
  float v[32];
  U::decode(w, row, u, v);
  uint4* o = reinterpret_cast<uint4*>(out + row * w.n_units * 32) + 4 * u;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    __half2 h[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) h[j] = __floats2half2_rn(v[8 * k + 2 * j], v[8 * k + 2 * j + 1]);
    o[k] = *reinterpret_cast<const uint4*>(h);
  }
}

template <DType T>
__global__ void dequant_f16_elements_kernel(const uint8_t* w, int64_t row_bytes, int64_t n_in, int64_t n_out, __half* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_in * n_out) return;
  out[i] = __float2half_rn(element<T>(w + (i / n_in) * row_bytes, i % n_in));
}

unsigned blocks(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

bool has_split_layout(DType t) { return split_sizes(t).quant_bytes > 0; }

void split_layout(DType t, const uint8_t* src, int64_t n_in, int64_t n_out, uint8_t* dst) {
  const SplitSizes z = split_sizes(t);
  const int64_t n_units = n_in / 32, n = n_units * n_out;
  uint8_t* scales = dst + n * z.quant_bytes;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* b = src + i * z.block_bytes;  // blocks of consecutive rows are consecutive
    std::memcpy(scales + i * z.scale_bytes, b, z.scale_bytes);
    std::memcpy(dst + i * z.quant_bytes, b + z.scale_bytes, z.quant_bytes);
  }
}

void gemv(const Weight& w, const float* x, int64_t n_tok, float* y, cudaStream_t s) {
  if (n_tok == 0 || w.n_out == 0) return;
  const dim3 threads(kWarpsPerBlock * 32);
  if (w.n_in % 32 != 0) {
    with_float_type(w.type, [&](auto t) {
      gemv_elements_kernel<decltype(t)::value><<<blocks(w.n_out, kWarpsPerBlock), threads, 0, s>>>(
          static_cast<const uint8_t*>(w.data), static_cast<int64_t>(row_bytes(w.type, w.n_in)), w.n_out, x, w.n_in,
          static_cast<int>(n_tok), y);
    });
    check_launch("gemv (elements)");
    return;
  }
  const RowRef r = row_ref(w);
  with_unit(w.type, w.layout, [&](auto unit) {
    using U = decltype(unit);
    const auto launch = [&](auto nt) {
      constexpr int NT = decltype(nt)::value;
      const dim3 grid(blocks(w.n_out, kWarpsPerBlock), static_cast<unsigned>((n_tok + NT - 1) / NT));
      gemv_kernel<U, NT><<<grid, threads, 0, s>>>(r, w.n_out, x, w.n_in, static_cast<int>(n_tok), y);
    };
    if (n_tok == 1) launch(std::integral_constant<int, 1>{});
    else if (n_tok == 2) launch(std::integral_constant<int, 2>{});
    else if (n_tok <= 4) launch(std::integral_constant<int, 4>{});
    else launch(std::integral_constant<int, 8>{});
  });
  check_launch("gemv");
}

void get_rows(const Weight& table, const int32_t* ids, int64_t n, float* out, cudaStream_t s) {
  if (n == 0) return;
  if (table.n_in % 32 != 0) {
    with_float_type(table.type, [&](auto t) {
      get_rows_elements_kernel<decltype(t)::value><<<static_cast<unsigned>(n), 128, 0, s>>>(
          static_cast<const uint8_t*>(table.data), static_cast<int64_t>(row_bytes(table.type, table.n_in)), ids, out,
          table.n_in);
    });
    check_launch("get_rows (elements)");
    return;
  }
  const RowRef r = row_ref(table);
  with_unit(table.type, table.layout, [&](auto unit) {
    const dim3 grid(static_cast<unsigned>(n), blocks(r.n_units, 64));
    get_rows_kernel<decltype(unit)><<<grid, 64, 0, s>>>(r, ids, out, table.n_in);
  });
  check_launch("get_rows");
}

void dequant_f16(const Weight& w, void* out, cudaStream_t s) {
  auto* o = static_cast<__half*>(out);
  if (w.n_in % 32 != 0) {
    with_float_type(w.type, [&](auto t) {
      dequant_f16_elements_kernel<decltype(t)::value><<<blocks(w.n_in * w.n_out, 256), 256, 0, s>>>(
          static_cast<const uint8_t*>(w.data), static_cast<int64_t>(row_bytes(w.type, w.n_in)), w.n_in, w.n_out, o);
    });
    check_launch("dequant_f16 (elements)");
    return;
  }
  const RowRef r = row_ref(w);
  with_unit(w.type, w.layout, [&](auto unit) {
    dequant_f16_kernel<decltype(unit)><<<blocks(w.n_out * r.n_units, 128), 128, 0, s>>>(r, w.n_out, o);
  });
  check_launch("dequant_f16");
}

}  // namespace tern::cuda
