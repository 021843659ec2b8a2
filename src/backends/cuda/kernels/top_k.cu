// Each row's k best logits on the device, in the order sampling ranks them (core/top_k.h: larger
// value first, equal values by smaller index, NaN as -inf), so that a sampler with top-k or greedy
// sampling takes 8k bytes of a row back to the host instead of the whole vocabulary, and sorts
// nothing there. One block per row:
// - k = 1: the first maximum, by a block-wide reduction of (value, index).
// - k > 1: radix selection of the k-th best value's key (an order-preserving 32-bit key: NaN as
//   -inf, -0 as +0), four passes of 8-bit digit histograms in shared memory, most significant
//   first (rows up to 48K entries keep their keys in shared memory after the first); then the
//   entries above it and, in index order, as many of the entries equal to it as complete k are
//   gathered, and ranked.
// Each thread issues the loads of eight chunks of the row before it uses the first, so that a pass
// costs about one memory latency per eight chunks rather than one per chunk.
#include <cuda_runtime.h>

#include <cfloat>
#include <climits>
#include <cstdint>

#include "backends/cuda/kernels/dependent_launch.cuh"
#include "backends/cuda/kernels/launch.h"

namespace tern::cuda {
namespace {

constexpr int kTopKThreads = 512;
constexpr int kTopKWarps = kTopKThreads / 32;

__device__ __forceinline__ float rank_value(float x) { return isnan(x) ? -INFINITY : x; }
// Larger keys for larger values; equal keys exactly for equal values (-0 == +0).
__device__ __forceinline__ uint32_t rank_key(float x) {
  const float v = rank_value(x);
  const uint32_t u = v == 0.0f ? 0u : __float_as_uint(v);  // -0 as +0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ bool ranks_before(float va, int ia, float vb, int ib) {
  return va > vb || (va == vb && ia < ib);
}

// Calls f(i, valid, key) for every entry of the row, in index order within each chunk of
// kTopKThreads (i = chunk start + thread), every thread the same number of times (f may hold
// barriers and warp collectives). The loads of kTopKUnroll chunks are issued before the first f.
// Keys come from the row, or from `cached` (shared memory) once `fill` has put them there.
constexpr int kTopKUnroll = 8;
template <class F>
__device__ __forceinline__ void scan_keys(const float* row, int64_t n, uint32_t* cached, bool from_cache, bool fill,
                                          F&& f) {
  for (int64_t base = 0; base < n; base += kTopKThreads * kTopKUnroll) {
    uint32_t key[kTopKUnroll];
#pragma unroll
    for (int u = 0; u < kTopKUnroll; ++u) {
      const int64_t i = base + u * kTopKThreads + threadIdx.x;
      key[u] = i >= n ? 0u : from_cache ? cached[i] : rank_key(row[i]);
    }
#pragma unroll
    for (int u = 0; u < kTopKUnroll; ++u) {
      const int64_t i = base + u * kTopKThreads + threadIdx.x;
      if (fill && i < n) cached[i] = key[u];
      f(i, i < n, key[u]);
    }
  }
}

// Rows of up to this many logits keep their keys in shared memory after the first pass (192 KB,
// one block per SM): the later passes then read no global memory.
constexpr int64_t kCachedKeys = 48 * 1024;

__global__ void __launch_bounds__(kTopKThreads)
    top_k_kernel(const float* __restrict__ logits, int64_t n, int k, float* __restrict__ values,
                 int32_t* __restrict__ ids) {
  TERN_DYNAMIC_SHARED(uint32_t, cached);  // [n] when n <= kCachedKeys
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * n;
  float* out_v = values + static_cast<int64_t>(blockIdx.x) * k;
  int32_t* out_i = ids + static_cast<int64_t>(blockIdx.x) * k;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  if (k == 1) {
    float best = -INFINITY;
    int at = INT_MAX;
    for (int64_t base = 0; base < n; base += kTopKThreads * kTopKUnroll) {
      float v[kTopKUnroll];
#pragma unroll
      for (int u = 0; u < kTopKUnroll; ++u) {
        const int64_t i = base + u * kTopKThreads + tid;
        v[u] = i < n ? rank_value(row[i]) : -INFINITY;
      }
#pragma unroll
      for (int u = 0; u < kTopKUnroll; ++u) {
        const int i = static_cast<int>(base + u * kTopKThreads + tid);
        if (i < n && ranks_before(v[u], i, best, at)) best = v[u], at = i;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float bv = __shfl_xor_sync(0xffffffffu, best, o);
      const int bi = __shfl_xor_sync(0xffffffffu, at, o);
      if (ranks_before(bv, bi, best, at)) best = bv, at = bi;
    }
    __shared__ float wv[kTopKWarps];
    __shared__ int wi[kTopKWarps];
    if (lane == 0) wv[warp] = best, wi[warp] = at;
    __syncthreads();
    if (tid == 0) {
      for (int w = 1; w < kTopKWarps; ++w)
        if (ranks_before(wv[w], wi[w], best, at)) best = wv[w], at = wi[w];
      out_v[0] = best;
      out_i[0] = at == INT_MAX ? 0 : at;  // an empty row cannot happen (k <= n)
    }
    return;
  }

  // The key of the k-th best, digit by digit: `prefix` holds the digits found (under `mask`), and
  // `need` how many of the entries matching them are still to be taken.
  const bool cache = n <= kCachedKeys;
  __shared__ uint32_t hist[256];
  __shared__ uint32_t s_prefix, s_need, s_equal;
  uint32_t prefix = 0, mask = 0, need = static_cast<uint32_t>(k), equal = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += kTopKThreads) hist[i] = 0;
    __syncthreads();
    // Lanes with the same digit add together: a row's logits share a few leading key bytes, and
    // one atomic per lane on the same bin would serialise the first pass.
    scan_keys(row, n, cached, cache && shift < 24, cache && shift == 24, [&](int64_t, bool valid, uint32_t key) {
      const uint32_t digit = valid && (key & mask) == prefix ? (key >> shift) & 255u : 256u;  // 256: none
      const uint32_t same = __match_any_sync(0xffffffffu, digit);
      if (digit != 256u && lane == __ffs(same) - 1) atomicAdd(&hist[digit], static_cast<uint32_t>(__popc(same)));
    });
    __syncthreads();
    if (warp == 0) {  // lane l holds digits 255 - 8l down to 248 - 8l; counts from the top digit
      uint32_t c[8], sum = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) sum += c[j] = hist[255 - 8 * lane - j];
      uint32_t incl = sum;
      for (int o = 1; o < 32; o <<= 1) {
        const uint32_t up = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += up;
      }
      uint32_t before = incl - sum;  // entries with a larger digit than this lane's
      if (before < need && need <= incl) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          if (need <= before + c[j]) {
            s_prefix = prefix | (static_cast<uint32_t>(255 - 8 * lane - j) << shift);
            s_need = need - before;
            s_equal = c[j];
            break;
          }
          before += c[j];
        }
      }
    }
    __syncthreads();
    prefix = s_prefix, need = s_need, equal = s_equal;
    mask |= 0xFFu << shift;
  }
  // Now prefix is the k-th best key, `equal` entries have it, and `need` of them (the first by
  // index) complete the k after the k - need entries with larger keys.
  const uint32_t threshold = prefix;
  const int greater = k - static_cast<int>(need);
  __shared__ float sel_v[kMaxTopK];
  __shared__ int sel_i[kMaxTopK];
  __shared__ int n_greater;
  __shared__ uint32_t warp_eq[kTopKWarps];
  if (tid == 0) n_greater = 0;
  __syncthreads();
  if (equal == need) {  // every entry with the threshold key is taken: no order needed
    scan_keys(row, n, cached, cache, false, [&](int64_t i, bool valid, uint32_t key) {
      if (valid && key >= threshold) {
        const int slot = atomicAdd(&n_greater, 1);
        sel_v[slot] = rank_value(row[i]), sel_i[slot] = static_cast<int>(i);
      }
    });
  } else {  // ties at the threshold: the first `need` of them by index, counted chunk by chunk
    uint32_t eq_before = 0;
    scan_keys(row, n, cached, cache, false, [&](int64_t i, bool valid, uint32_t key) {
      const bool eq = valid && key == threshold;
      if (valid && key > threshold) {
        const int slot = atomicAdd(&n_greater, 1);
        sel_v[slot] = rank_value(row[i]), sel_i[slot] = static_cast<int>(i);
      }
      const uint32_t ballot = __ballot_sync(0xffffffffu, eq);
      if (lane == 0) warp_eq[warp] = __popc(ballot);
      __syncthreads();
      uint32_t pos = eq_before + __popc(ballot & ((1u << lane) - 1u)), chunk = 0;
      for (int w = 0; w < kTopKWarps; ++w) {
        if (w < warp) pos += warp_eq[w];
        chunk += warp_eq[w];
      }
      if (eq && pos < need) sel_v[greater + pos] = rank_value(row[i]), sel_i[greater + pos] = static_cast<int>(i);
      eq_before += chunk;
      __syncthreads();  // before warp_eq is written again
    });
  }
  __syncthreads();
  // Rank: an entry's place is the number of entries that rank before it.
  if (tid < k) {
    const float v = sel_v[tid];
    const int id = sel_i[tid];
    int place = 0;
    for (int j = 0; j < k; ++j) place += ranks_before(sel_v[j], sel_i[j], v, id);
    out_v[place] = v;
    out_i[place] = id;
  }
}

}  // namespace

void prepare_top_k() {
  check(cudaFuncSetAttribute(top_k_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(kCachedKeys * sizeof(uint32_t))),
        "top k: shared memory opt-in");
}

void top_k(const float* logits, int64_t n, int64_t rows, int k, float* values, int32_t* ids, cudaStream_t s) {
  if (rows == 0) return;
  const size_t smem = k > 1 && n <= kCachedKeys ? static_cast<size_t>(n) * sizeof(uint32_t) : 0;
  launch_plain("top k", top_k_kernel, dim3(static_cast<unsigned>(rows)), dim3(kTopKThreads), smem, s, logits, n, k, values, ids);
}

}  // namespace tern::cuda
