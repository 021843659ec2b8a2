// Weight kernels: GEMV with the dequantisation in the kernel (decode and small batches; weights read
// once per 8 tokens; legacy formats and Q4_K/Q5_K/Q6_K as integer dot products against 8-bit
// activations on dp4a, Q2_K/Q3_K and float formats decoded to f32), embedding-row gathers, and
// dequantisation to f16 for cuBLAS.
//
// GEMV work split: a group of 1, 2 or 4 warps per two output rows, its threads over the rows'
// 32-element units (thread i of the group takes units i, i + group size, ...), so that a thread holds
// at most two units of a row on the 1.1B shape and the 5632-wide down projection launches as many
// warps as the narrow matrices. Partial sums are reduced across each warp, then across the group's
// warps, in a fixed order: a token's result never depends on the other tokens of the batch.
//
// A GEMV is launched to overlap the kernel before it (dependent_launch.cuh): before waiting for its
// input it loads its first two units of each row into registers (legacy and 16-bit formats; on the
// 1.1B shape, all of them) or asks L2 for its rows (K-quants), so the weight stream starts while
// the previous kernel finishes.
//
// With TERN_CUDA_STREAM=1, split-layout Q4_0/Q4_1/Q8_0, F16/BF16 and Q4_K/Q5_K weights with
// rounded activations go to the streaming kernel instead (gemv_stream.cu), which measured slower on
// the H200 (it is off by default); this one serves every format otherwise.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "backends/cuda/kernels/activation.cuh"
#include "backends/cuda/kernels/decode.cuh"
#include "backends/cuda/kernels/dependent_launch.cuh"
#include "backends/cuda/kernels/gemv.cuh"

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
    case DType::Q6_K: return split ? f(Unit<DType::Q6_K, true>{}) : f(Unit<DType::Q6_K, false>{});
    default: break;
  }
  check(cudaErrorInvalidValue, "cuda backend: not a weight type");
}

// A block of the split layout: its elements, the bytes of its quants and of its scale, where the
// scale lies in the file's block (the legacy formats' first bytes; Q6_K's d, its last two).
struct SplitSizes {
  int quant_bytes, scale_bytes, block_bytes, scale_offset, block_elems;
};
SplitSizes split_sizes(DType t) {
  switch (t) {
    case DType::Q4_0: return {16, 2, 18, 0, 32};
    case DType::Q4_1: return {16, 4, 20, 0, 32};
    case DType::Q8_0: return {32, 2, 34, 0, 32};
    case DType::Q6_K: return {208, 2, 210, 208, 256};
    default: return {0, 0, 0, 0, 0};
  }
}

RowRef row_ref(const Weight& w) {
  const int64_t n_units = w.n_in / 32;
  RowRef r{static_cast<const uint8_t*>(w.data), nullptr, n_units, static_cast<int64_t>(row_bytes(w.type, w.n_in)), 0};
  if (w.layout == kSplitLayout) {
    const SplitSizes z = split_sizes(w.type);
    const int64_t blocks = w.n_in / z.block_elems;
    r.scales = r.data + w.n_out * blocks * z.quant_bytes;
    r.row_bytes = blocks * z.quant_bytes;
    r.scale_row_bytes = blocks * z.scale_bytes;
  }
  return r;
}

// Warps sharing a row group: enough that a thread holds at most two units of a row (up to 256 units).
int group_warps(int64_t n_units) { return n_units <= 64 ? 1 : n_units <= 128 ? 2 : 4; }

// Asks L2 for bytes [p, p + n), one 128-byte line per request, requests spread over `count` threads.
__device__ __forceinline__ void prefetch_l2(const uint8_t* p, int64_t n, int index, int count) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{127};
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(n);
  for (uintptr_t a = first + static_cast<uintptr_t>(index) * 128; a < end; a += static_cast<uintptr_t>(count) * 128)
#ifdef TERN_CUDA_EMULATE  // nothing to prefetch into on the host
    (void)a;
#else
    asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
#endif
}

__device__ __forceinline__ void prefetch_row(const RowRef& w, int64_t row, int index, int count) {
  prefetch_l2(w.data + row * w.row_bytes, w.row_bytes, index, count);
  if (w.scale_row_bytes) prefetch_l2(w.scales + row * w.scale_row_bytes, w.scale_row_bytes, index, count);
}

// A: the activation type, act_type(T) or F32 (exact). wr: warps per row group (group_warps).
//
// Weights do not depend on the kernel before this one, so a thread loads its first kPre units of
// both rows (legacy formats as levels, 16-bit formats as raw bytes) before it waits for its input:
// on the 1.1B shape that is every unit it has, and the whole weight stream of the launch overlaps
// the kernels before it. The units are summed in the same order either way (args.preload only moves
// the loads), so the bits do not depend on it.
//
// kGlu (16-bit and f32 weights only): the two weights are gate and up, and each warp's pair of rows
// is row r0 / 2 of both; it writes silu(gate) * up to y[0] (and args.glu_rounded) instead of the
// two products. A template parameter, so that the other GEMVs carry none of it.
template <DType T, bool kSplit, int NT, DType A, bool kGlu>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_kernel(GemvArgs args, Activation act, int n_tok, int wr) {
  constexpr bool kBytes = A == DType::Q8_0 || A == DType::Q8_1 || A == DType::Q8_K;
  constexpr bool kLevels = kBytes && is_legacy_type(T);
  constexpr bool kAffine = T == DType::Q4_1 || T == DType::Q5_1;
  constexpr int kGroup = A == DType::Q8_K ? 256 : 32;
  constexpr bool kRaw16 = T == DType::F16 || T == DType::BF16;
  constexpr bool kKLevels = A == DType::Q8_K && has_k_levels(T);
  constexpr int kPre = kLevels || kRaw16 ? 2 : 0;
  using Pre = std::conditional_t<kLevels, Levels, Raw16>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = warp / wr, part = warp % wr;
  const int first = part * 32 + lane, stride = wr * 32;  // this thread's first unit, and the step
  const int64_t r0 = (static_cast<int64_t>(blockIdx.x) * (kWarpsPerBlock / wr) + group) * kRowsPerWarp;
  const bool any = r0 < args.total_rows;
  const int t0 = static_cast<int>(blockIdx.y) * NT;
  const int nt = min(NT, n_tok - t0);
  const int64_t n_units = any ? args.n_units : 0;  // a group past the last row only joins the reduction
  const bool preload = kPre > 0 && args.preload;
  // The L2 prefetch pays for the quantised formats (q4_0 step 0.69 -> 0.61 ms on an H100) and costs
  // the 16-bit ones (bf16 1.06 -> 1.19 ms), whose 16-byte loads already keep enough bytes in flight.
  // Rows the preload covers whole need none.
  constexpr bool kPrefetch = T != DType::F32 && T != DType::F16 && T != DType::BF16;
  const bool prefetch = kPrefetch && blockIdx.y == 0 && !(preload && n_units <= kPre * stride);
  RowOf rows[kRowsPerWarp];
  bool live[kRowsPerWarp];
  locate_pair(args, r0, kGlu, rows, live);
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
    if (prefetch && live[r]) prefetch_row(rows[r].w, rows[r].row, first, stride);
  Pre pre[kPre > 0 ? kPre : 1][kRowsPerWarp];
  if (preload) {
#pragma unroll
    for (int k = 0; k < kPre; ++k)
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const int64_t u = first + static_cast<int64_t>(stride) * k;
        if (!live[r] || u >= n_units) continue;
        if constexpr (kLevels) Legacy<T, kSplit>::load(rows[r].w, rows[r].row, u, pre[k][r]);
        else if constexpr (kRaw16) Unit<T, kSplit>::load(rows[r].w, rows[r].row, u, pre[k][r]);
      }
  }
  release_dependents();
  wait_for_inputs();

  float acc[kRowsPerWarp][NT];
  zero(acc);
  // Unit u of both rows against every token: levels against 8-bit activations, or decoded floats.
  const auto levels_unit = [&](const Levels(&lv)[kRowsPerWarp], int64_t u) {
    add_levels<NT, kGroup, kAffine>(acc, lv, act, t0, nt, u);
  };
  const auto floats_unit = [&](const float(&wv)[kRowsPerWarp][32], int64_t u) {
    add_floats<NT, A>(acc, wv, act, t0, nt, u);
  };

  int64_t u0 = first;  // the first unit not preloaded
  if (preload) {
#pragma unroll
    for (int k = 0; k < kPre; ++k) {
      const int64_t u = first + static_cast<int64_t>(stride) * k;
      if (u >= n_units) break;
      if constexpr (kLevels) {
        levels_unit(pre[k], u);
      } else if constexpr (kRaw16) {
        float wv[kRowsPerWarp][32];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
          if (live[r]) Unit<T, kSplit>::widen(pre[k][r], wv[r]);
        floats_unit(wv, u);
      }
    }
    u0 = first + static_cast<int64_t>(stride) * kPre;
  }
  if constexpr (kLevels) {
    // Two units per thread per step, all their weight loads issued before any arithmetic.
    for (int64_t ub = u0; ub < n_units; ub += 2 * stride) {
      Levels lv[2][kRowsPerWarp];
#pragma unroll
      for (int k = 0; k < 2; ++k)
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
          if (live[r] && ub + stride * k < n_units) Legacy<T, kSplit>::load(rows[r].w, rows[r].row, ub + stride * k, lv[k][r]);
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        if (ub + stride * k >= n_units) break;
        levels_unit(lv[k], ub + stride * k);
      }
    }
  } else if constexpr (kKLevels) {
    // K-quants against Q8_K: levels and integer scales, exact integer sums on dp4a.
    using K = KLevels<T, kSplit>;
    for (int64_t u = u0; u < n_units; u += stride) {
      quant::KUnitLevels kl[kRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) K::load(rows[r].w, rows[r].row, u, kl[r]);  // a missing row: row 0
      add_k_levels<NT, K::kMin>(acc, kl, act, t0, nt, u);
    }
  } else {
    for (int64_t u = u0; u < n_units; u += stride) {
      float wv[kRowsPerWarp][32];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
        if (live[r]) Unit<T, kSplit>::decode(rows[r].w, rows[r].row, u, wv[r]);
      floats_unit(wv, u);
    }
  }

  // Each warp's sums, then (wr > 1) the group's warps' sums in warp order.
  __shared__ float partial[kWarpsPerBlock][kRowsPerWarp][NT];
  warp_sums(acc);
  if (wr > 1) {
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
        for (int t = 0; t < NT; ++t) partial[warp][r][t] = acc[r][t];
    __syncthreads();
    if (part != 0) return;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        float v = 0.0f;
        for (int p = 0; p < wr; ++p) v += partial[group * wr + p][r][t];
        acc[r][t] = v;
      }
  }
  if (lane == 0) write_pair<NT, kGlu>(args, rows, live, acc, t0, nt);
}

// Element i of a row of a plain float type (rows whose length is not a multiple of 32).
template <DType T>
__device__ float element(const uint8_t* row, int64_t i) {
  if constexpr (T == DType::F32) return reinterpret_cast<const float*>(row)[i];
  if constexpr (T == DType::F16) return h2f(reinterpret_cast<const uint16_t*>(row)[i]);
  if constexpr (T == DType::BF16) return __uint_as_float(static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(row)[i]) << 16);
  return 0.0f;
}

// Element i of token t of an F32/F16/BF16 activation.
__device__ float act_element(const Activation& a, int64_t t, int64_t i) {
  const int64_t k = t * a.n_in + i;
  if (a.type == DType::F16) return h2f(static_cast<const uint16_t*>(a.q)[k]);
  if (a.type == DType::BF16) return __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(a.q)[k]) << 16);
  return static_cast<const float*>(a.q)[k];
}

// Weights of a plain float type whose rows are not a multiple of 32 elements.
template <DType T>
__global__ void gemv_elements_kernel(const uint8_t* w, int64_t row_bytes, int64_t n_out, Activation x, int n_tok,
                                     float* y) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (row >= n_out) return;
  const uint8_t* wr = w + row * row_bytes;
  for (int t = 0; t < n_tok; ++t) {
    float s = 0.0f;
    for (int64_t i = lane; i < x.n_in; i += 32) s = fmaf(element<T>(wr, i), act_element(x, t, i), s);
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

// gemv_kernel for the weights' type and layout (those of w), the activation's form and the token
// count; glu: the SwiGLU kernel (gemv_swiglu).
void launch_gemv(const GemvArgs& args, const Weight& w0, const Activation& x, int64_t n_tok, cudaStream_t s,
                 bool glu = false) {
  if (launch_gemv_stream(args, w0.type, w0.layout, x, n_tok, glu, s)) return;
  const dim3 threads(kWarpsPerBlock * 32);
  const bool split = w0.layout == kSplitLayout;
  const bool exact = x.type == DType::F32;
  const auto launch = [&](auto type, auto is_split, auto is_exact) {
    constexpr DType T = decltype(type)::value;
    constexpr DType A = decltype(is_exact)::value ? DType::F32 : act_type(T);
    const auto go = [&](auto nt) {
      constexpr int NT = decltype(nt)::value;
      const int wr = group_warps(args.n_units);
      const dim3 grid(blocks(args.total_rows, kWarpsPerBlock / wr * kRowsPerWarp),
                      static_cast<unsigned>((n_tok + NT - 1) / NT));
      constexpr bool kSplit = decltype(is_split)::value;
      if constexpr (glu_supports(T)) {
        if (glu) {
          launch_dependent("gemv (swiglu)", gemv_kernel<T, kSplit, NT, A, true>, grid, threads, 0, s, args, x,
                           static_cast<int>(n_tok), wr);
          return;
        }
      }
      launch_dependent("gemv", gemv_kernel<T, kSplit, NT, A, false>, grid, threads, 0, s, args, x,
                       static_cast<int>(n_tok), wr);
    };
    if (n_tok == 1) go(std::integral_constant<int, 1>{});
    else if (n_tok == 2) go(std::integral_constant<int, 2>{});
    else if (n_tok <= 4) go(std::integral_constant<int, 4>{});
    else go(std::integral_constant<int, 8>{});
  };
  using std::integral_constant;
  const auto with_exact = [&](auto type, auto is_split) {
    if (exact) launch(type, is_split, integral_constant<bool, true>{});
    else launch(type, is_split, integral_constant<bool, false>{});
  };
  using No = integral_constant<bool, false>;
  using Yes = integral_constant<bool, true>;
  switch (w0.type) {
    case DType::F32: with_exact(integral_constant<DType, DType::F32>{}, No{}); break;
    case DType::F16: with_exact(integral_constant<DType, DType::F16>{}, No{}); break;
    case DType::BF16: with_exact(integral_constant<DType, DType::BF16>{}, No{}); break;
    case DType::Q4_0:
      split ? with_exact(integral_constant<DType, DType::Q4_0>{}, Yes{}) : with_exact(integral_constant<DType, DType::Q4_0>{}, No{});
      break;
    case DType::Q4_1:
      split ? with_exact(integral_constant<DType, DType::Q4_1>{}, Yes{}) : with_exact(integral_constant<DType, DType::Q4_1>{}, No{});
      break;
    case DType::Q5_0: with_exact(integral_constant<DType, DType::Q5_0>{}, No{}); break;
    case DType::Q5_1: with_exact(integral_constant<DType, DType::Q5_1>{}, No{}); break;
    case DType::Q8_0:
      split ? with_exact(integral_constant<DType, DType::Q8_0>{}, Yes{}) : with_exact(integral_constant<DType, DType::Q8_0>{}, No{});
      break;
    case DType::Q2_K: with_exact(integral_constant<DType, DType::Q2_K>{}, No{}); break;
    case DType::Q3_K: with_exact(integral_constant<DType, DType::Q3_K>{}, No{}); break;
    case DType::Q4_K: with_exact(integral_constant<DType, DType::Q4_K>{}, No{}); break;
    case DType::Q5_K: with_exact(integral_constant<DType, DType::Q5_K>{}, No{}); break;
    case DType::Q6_K:
      split ? with_exact(integral_constant<DType, DType::Q6_K>{}, Yes{}) : with_exact(integral_constant<DType, DType::Q6_K>{}, No{});
      break;
    default: check(cudaErrorInvalidValue, "gemv: not a weight type");
  }
}

}  // namespace

bool has_split_layout(DType t) { return split_sizes(t).quant_bytes > 0; }

void split_layout(DType t, const uint8_t* src, int64_t n_in, int64_t n_out, uint8_t* dst) {
  const SplitSizes z = split_sizes(t);
  const int64_t n = n_in / z.block_elems * n_out;
  const int quant_offset = z.scale_offset == 0 ? z.scale_bytes : 0;
  uint8_t* scales = dst + n * z.quant_bytes;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* b = src + i * z.block_bytes;  // blocks of consecutive rows are consecutive
    std::memcpy(scales + i * z.scale_bytes, b + z.scale_offset, z.scale_bytes);
    std::memcpy(dst + i * z.quant_bytes, b + quant_offset, z.quant_bytes);
  }
}

void gemv(const Weight* w, float* const* y, int n_weights, const Activation& x, int64_t n_tok, cudaStream_t s) {
  if (n_tok == 0 || n_weights == 0) return;
  const dim3 threads(kWarpsPerBlock * 32);
  const int64_t n_in = w[0].n_in;
  if (n_in % 32 != 0) {
    for (int i = 0; i < n_weights; ++i) {
      with_float_type(w[i].type, [&](auto t) {
        launch_plain("gemv (elements)", gemv_elements_kernel<decltype(t)::value>, dim3(blocks(w[i].n_out, kWarpsPerBlock)),
                    threads, 0, s, static_cast<const uint8_t*>(w[i].data),
                    static_cast<int64_t>(row_bytes(w[i].type, n_in)), w[i].n_out, x, static_cast<int>(n_tok), y[i]);
      });
    }
    return;
  }
  GemvArgs args;
  args.preload = early_loads();
  args.n = n_weights;
  args.n_units = n_in / 32;
  for (int i = 0; i < n_weights; ++i) {
    args.w[i] = row_ref(w[i]);
    args.y[i] = y[i];
    args.row0[i] = args.total_rows;
    args.n_out[i] = w[i].n_out;
    args.total_rows += w[i].n_out;
  }
  launch_gemv(args, w[0], x, n_tok, s);
}

void gemv_swiglu(const Weight& gate, const Weight& up, float* out, const Activation& x, int64_t n_tok,
                 const Activation& rounded, cudaStream_t s) {
  if (n_tok == 0) return;
  if (gate.n_in % 32 != 0 || up.n_in != gate.n_in || up.n_out != gate.n_out || up.type != gate.type ||
      up.layout != gate.layout || !glu_supports(gate.type) || !glu_supports(rounded.type))
    check(cudaErrorInvalidValue,
          "gemv_swiglu: gate and up must match, f32/f16/bf16 in 32-element units; rounding f16/bf16/f32");
  GemvArgs args;
  args.preload = early_loads();
  args.n = 2;
  args.n_units = gate.n_in / 32;
  args.w[0] = row_ref(gate), args.w[1] = row_ref(up);
  args.y[0] = out, args.y[1] = nullptr;
  args.row0[0] = 0, args.row0[1] = gate.n_out;
  args.n_out[0] = args.n_out[1] = gate.n_out;
  args.total_rows = 2 * gate.n_out;
  args.glu_rounded = rounded;
  launch_gemv(args, gate, x, n_tok, s, true);
}

void get_rows(const Weight& table, const int32_t* ids, int64_t n, float* out, cudaStream_t s) {
  if (n == 0) return;
  if (table.n_in % 32 != 0) {
    with_float_type(table.type, [&](auto t) {
      launch_plain("get_rows (elements)", get_rows_elements_kernel<decltype(t)::value>, dim3(static_cast<unsigned>(n)),
                  dim3(128), 0, s, static_cast<const uint8_t*>(table.data),
                  static_cast<int64_t>(row_bytes(table.type, table.n_in)), ids, out, table.n_in);
    });
    return;
  }
  const RowRef r = row_ref(table);
  with_unit(table.type, table.layout, [&](auto unit) {
    const dim3 grid(static_cast<unsigned>(n), blocks(r.n_units, 64));
    launch_plain("get_rows", get_rows_kernel<decltype(unit)>, grid, dim3(64), 0, s, r, ids, out, table.n_in);
  });
}

void dequant_f16(const Weight& w, void* out, cudaStream_t s) {
  auto* o = static_cast<__half*>(out);
  if (w.n_in % 32 != 0) {
    with_float_type(w.type, [&](auto t) {
      launch_plain("dequant_f16 (elements)", dequant_f16_elements_kernel<decltype(t)::value>,
                  dim3(blocks(w.n_in * w.n_out, 256)), dim3(256), 0, s, static_cast<const uint8_t*>(w.data),
                  static_cast<int64_t>(row_bytes(w.type, w.n_in)), w.n_in, w.n_out, o);
    });
    return;
  }
  const RowRef r = row_ref(w);
  with_unit(w.type, w.layout, [&](auto unit) {
    launch_plain("dequant_f16", dequant_f16_kernel<decltype(unit)>, dim3(blocks(w.n_out * r.n_units, 128)), dim3(128), 0, s,
                 r, w.n_out, o);
  });
}

}  // namespace tern::cuda
