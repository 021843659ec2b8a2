// Decode attention over the paged KV cache (ops.h: K/V [head_dim, n_kv_head, slots], blocks named
// by each sequence's block table): split-KV (FlashDecoding, Dao et al., 2023). Each token's keys
// are cut into fixed segments of kSplitPositions; one block per (token, KV head, segment) computes
// that segment's softmax numerator and its max and sum for all the query heads sharing the KV head,
// and a second kernel merges the segments exactly. The segments are fixed, so a token's result does
// not depend on how many blocks the batch launched. When no token of the launch has more than one
// segment (contexts up to kSplitPositions), the first kernel writes the outputs itself, the same
// bits the merge would give, and the merge is not launched. (Merging in the split kernel's last
// block for every context, by an atomic count, measured slower at long contexts on an H200: one
// block per token and KV head merged what the merge kernel spreads over every head.)
//
// Two kernels compute a segment: for f16 caches with D 64 or 128, a FlashAttention tile on the
// tensor cores whose 16 query rows are the heads of a GQA group (decode_tc_kernel); otherwise
// (f32 caches, D 256) decode_split_kernel in f32 on the CUDA cores.
#include <cuda_fp16.h>

#include <cfloat>

#include "backends/cuda/kernels/activation.cuh"
#include "backends/cuda/kernels/dependent_launch.cuh"
#include "backends/cuda/kernels/paged_kv.cuh"
#include "backends/cuda/kernels/tensor_core.cuh"

namespace tern::cuda {
namespace {

constexpr int kDecodeThreads = 128;
constexpr int kMaxHeadsPerBlock = 8;  // query heads per block; larger GQA groups take several blocks

// Elements i .. i + 7 of a cache row (16-byte aligned for f16, 32 for f32).
__device__ __forceinline__ void load8(const __half* p, int i, float (&f)[8]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p + i);
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 x = __half22float2(*reinterpret_cast<const __half2*>(&w[j]));
    f[2 * j] = x.x, f[2 * j + 1] = x.y;
  }
}
__device__ __forceinline__ void load8(const float* p, int i, float (&f)[8]) {
  const float4 a = *reinterpret_cast<const float4*>(p + i), b = *reinterpret_cast<const float4*>(p + i + 4);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

// Partial results per (item, head, segment): D floats of numerator, then max and sum.
template <int D>
constexpr int partial_stride() {
  return D + 2;
}

// What a block of either split kernel computes: grid (item, KV head x blocks of its GQA group,
// segment), kHeads query heads per block.
struct SegmentBlock {
  DecodeItem item;
  int split, p0, p1;  // the segment: positions p0 .. p1 - 1 (p0 >= item.n_kv: nothing to do)
  int kvh, h0, hn;    // the KV head and the query heads h0 .. h0 + hn - 1
};
template <int kHeads>
__device__ __forceinline__ SegmentBlock segment_block(const DecodeItem* items, const AttnDims& dims) {
  SegmentBlock b;
  b.item = items[blockIdx.x];
  b.split = blockIdx.z;
  b.p0 = b.split * kSplitPositions;
  b.p1 = min(b.p0 + kSplitPositions, b.item.n_kv);
  const int group = dims.n_head / dims.n_kv_head;
  const int chunks = (group + kHeads - 1) / kHeads;
  const int chunk = blockIdx.y % chunks;
  b.kvh = blockIdx.y / chunks;
  b.h0 = b.kvh * group + chunk * kHeads;
  b.hn = min(kHeads, group - chunk * kHeads);
  return b;
}

// Element c of head h0 + h of the segment's result: numerator o, max m (natural units) and sum l.
// With one segment per token in the launch it is the output (o / l: the merge of one segment, bit
// for bit, since its weight e^(m - m) is 1), also rounded for the output projection (whole warps,
// 32 consecutive elements of a head each, as round_into needs); otherwise the partial result.
template <int D>
__device__ __forceinline__ void write_segment(const SegmentBlock& b, const AttnDims& dims, int max_splits,
                                              float* partial, float* out, const Activation& rounded, int h, int c,
                                              float o, float m, float l) {
  if (max_splits == 1) {
    const float r = o / l;
    out[(static_cast<int64_t>(b.item.token) * dims.n_head + b.h0 + h) * D + c] = r;
    round_into(rounded, b.item.token, static_cast<int64_t>(b.h0 + h) * D + c, r);
    return;
  }
  float* dst = partial + ((static_cast<int64_t>(blockIdx.x) * dims.n_head + b.h0 + h) * max_splits + b.split) *
                             partial_stride<D>();
  dst[c] = o;
  if (c == 0) dst[D] = m, dst[D + 1] = l;
}

// The general kernel (f32 caches, and D 256): a thread per key for the scores, a warp per head for
// the softmax, a V row per kTpr threads for the weighted sum, block barriers between the phases.
template <int D, class CT>
__global__ void __launch_bounds__(kDecodeThreads)
    decode_split_kernel(const float* __restrict__ q, const CT* __restrict__ k, const CT* __restrict__ v,
                        const KvSeq* __restrict__ seqs, const DecodeItem* __restrict__ items, AttnDims dims,
                        int max_splits, float* __restrict__ partial, float* __restrict__ out, Activation rounded) {
  release_dependents();
  wait_for_inputs();
  const SegmentBlock sb = segment_block<kMaxHeadsPerBlock>(items, dims);
  if (sb.p0 >= sb.item.n_kv) return;  // the whole block: this token has fewer segments than the launch
  const DecodeItem item = sb.item;
  const int p0 = sb.p0, p1 = sb.p1, len = p1 - p0, kvh = sb.kvh, h0 = sb.h0, hn = sb.hn;
  const KvSeq seq = seqs[item.seq];
  const int64_t kv_row = static_cast<int64_t>(dims.n_kv_head) * D;

  __shared__ float qs[kMaxHeadsPerBlock][D];
  __shared__ float sc[kMaxHeadsPerBlock][kSplitPositions];
  __shared__ float mx[kMaxHeadsPerBlock], sum[kMaxHeadsPerBlock];
  __shared__ float red[kDecodeThreads / 32][D];

  // q meets an f16 cache as f16, as on the CPU backend (and in llama.cpp).
  for (int i = threadIdx.x; i < hn * D; i += kDecodeThreads) {
    const float x = q[(static_cast<int64_t>(item.token) * dims.n_head + h0 + i / D) * D + i % D];
    qs[i / D][i % D] = sizeof(CT) == 2 ? __half2float(__float2half_rn(x)) : x;
  }
  __syncthreads();

  // Scores: a thread per key.
  for (int p = p0 + threadIdx.x; p < p1; p += kDecodeThreads) {
    const CT* kr = k + slot_of(seq, dims.block_size, p) * kv_row + static_cast<int64_t>(kvh) * D;
    float s[kMaxHeadsPerBlock];
#pragma unroll
    for (int h = 0; h < kMaxHeadsPerBlock; ++h) s[h] = 0.0f;
#pragma unroll 2
    for (int i = 0; i < D; i += 8) {
      float kk[8];
      load8(kr, i, kk);
#pragma unroll
      for (int h = 0; h < kMaxHeadsPerBlock; ++h) {
        if (h < hn) {
#pragma unroll
          for (int j = 0; j < 8; ++j) s[h] = fmaf(qs[h][i + j], kk[j], s[h]);
        }
      }
    }
#pragma unroll
    for (int h = 0; h < kMaxHeadsPerBlock; ++h)
      if (h < hn) sc[h][p - p0] = s[h] * dims.scale;
  }
  __syncthreads();

  // Softmax numerators of the segment: a warp per head.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int h = warp; h < hn; h += kDecodeThreads / 32) {
    float m = -FLT_MAX;
    for (int i = lane; i < len; i += 32) m = fmaxf(m, sc[h][i]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float l = 0.0f;
    for (int i = lane; i < len; i += 32) {
      const float e = expf(sc[h][i] - m);
      sc[h][i] = e;
      l += e;
    }
    for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
    if (lane == 0) mx[h] = m, sum[h] = l;
  }
  __syncthreads();

  // Weighted values: kTpr threads per V row with 8 dims (one 16-byte load) each, kRowLanes rows in
  // flight; then the row lanes summed in a fixed order, inside each warp by shuffles and across the
  // warps through shared memory, one head at a time.
  constexpr int kTpr = D / 8;
  constexpr int kRowLanes = kDecodeThreads / kTpr;
  const int col = (threadIdx.x % kTpr) * 8, row_lane = threadIdx.x / kTpr;
  float acc[kMaxHeadsPerBlock][8];
#pragma unroll
  for (int h = 0; h < kMaxHeadsPerBlock; ++h)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[h][j] = 0.0f;
#pragma unroll 4
  for (int p = p0 + row_lane; p < p1; p += kRowLanes) {
    float vv[8];
    load8(v + slot_of(seq, dims.block_size, p) * kv_row + static_cast<int64_t>(kvh) * D, col, vv);
#pragma unroll
    for (int h = 0; h < kMaxHeadsPerBlock; ++h) {
      const float w = h < hn ? sc[h][p - p0] : 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[h][j] = fmaf(w, vv[j], acc[h][j]);
    }
  }
#pragma unroll
  for (int o = kTpr; o < 32; o <<= 1)
#pragma unroll
    for (int h = 0; h < kMaxHeadsPerBlock; ++h)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[h][j] += __shfl_xor_sync(0xffffffffu, acc[h][j], o);
#pragma unroll
  for (int h = 0; h < kMaxHeadsPerBlock; ++h) {
    if (h >= hn) break;
    if (lane < kTpr)
#pragma unroll
      for (int j = 0; j < 8; ++j) red[warp][col + j] = acc[h][j];
    __syncthreads();
    // Whole warps take part (D is a multiple of 32), as write_segment needs.
    for (int c = threadIdx.x; c < D; c += kDecodeThreads) {
      float o = 0.0f;
#pragma unroll
      for (int w = 0; w < kDecodeThreads / 32; ++w) o += red[w][c];
      write_segment<D>(sb, dims, max_splits, partial, out, rounded, h, c, o, mx[h], sum[h]);
    }
    __syncthreads();
  }
}

// Merges a token's segments: o = sum_s e^(m_s - M) O_s / sum_s e^(m_s - M) l_s. `rounded` (type F32:
// none) also receives o rounded for the output projection (round_into: a warp holds 32 consecutive
// elements of one head, D being a multiple of 32).
template <int D>
__global__ void decode_merge_kernel(const DecodeItem* __restrict__ items, const float* __restrict__ partial,
                                    int n_head, int max_splits, float* __restrict__ out, Activation rounded) {
  release_dependents();
  wait_for_inputs();
  const DecodeItem item = items[blockIdx.x];
  const int h = blockIdx.y, n_splits = (item.n_kv + kSplitPositions - 1) / kSplitPositions;
  const float* base = partial + (static_cast<int64_t>(blockIdx.x) * n_head + h) * max_splits * partial_stride<D>();
  float m = -FLT_MAX;
  for (int s = 0; s < n_splits; ++s) m = fmaxf(m, base[s * partial_stride<D>() + D]);
  float l = 0.0f;
  for (int s = 0; s < n_splits; ++s) l += base[s * partial_stride<D>() + D + 1] * expf(base[s * partial_stride<D>() + D] - m);
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < n_splits; ++s) o += base[s * partial_stride<D>() + c] * expf(base[s * partial_stride<D>() + D] - m);
    out[(static_cast<int64_t>(item.token) * n_head + h) * D + c] = o / l;
    round_into(rounded, item.token, static_cast<int64_t>(h) * D + c, o / l);
  }
}

// The tensor-core kernel (f16 caches, D 64 and 128). A block of 4 warps takes up to 16 query heads
// of one KV head (GQA; rows past the group are zero and never written) and one segment. Warp w
// takes keys 16w .. 16w + 15 of every 64 keys of the segment and streams them through its own ring
// of tc_stages<D>() stages in shared memory (cp.async: the loads hold no registers, so each warp keeps
// a whole stage of K and V rows in flight while it computes on the one before; no block barrier
// until the end). Per 16 keys: S = Q K^T and O += P V on mma.sync with the online softmax of the
// prefill kernel, P in registers. At the end the four warps' maxima, sums and outputs are merged
// through shared memory into the segment's result. The scores, P and V meet as f16 (as in the
// prefill kernel), the sums in f32.
constexpr int kTcWarps = 4;
constexpr int kTcThreads = kTcWarps * 32;
constexpr int kTcHeads = 16;   // the rows of the m16n8k16 products
constexpr int kWarpKeys = 16;  // keys per warp and step: the k of the P V product
constexpr int kStepKeys = kTcWarps * kWarpKeys;
// Ring stages per warp. D 128: two, so that three blocks (74 KB of shared memory each: 12 warps,
// 96 KB of loads in flight) fit an SM. D 64: four, so that a segment's 256 keys are all asked for
// before the first is used: at batch 1 and a short context the kernel is one memory latency long.
template <int D>
constexpr int tc_stages() {
  return D == 64 ? 4 : 2;
}

template <int D>
constexpr size_t tc_decode_smem_bytes() {  // Q rows, then each warp's ring (stages of K rows, V rows)
  return static_cast<size_t>(kTcHeads + kTcWarps * tc_stages<D>() * 2 * kWarpKeys) * smem_row<D>() * sizeof(__half);
}
// The merge at the end reuses that memory for the warps' outputs.
static_assert(kTcWarps * kTcHeads * 64 * sizeof(float) <= tc_decode_smem_bytes<64>());
static_assert(kTcWarps * kTcHeads * 128 * sizeof(float) <= tc_decode_smem_bytes<128>());

template <int D>
__global__ void __launch_bounds__(kTcThreads)
    decode_tc_kernel(const float* __restrict__ q, const __half* __restrict__ k, const __half* __restrict__ v,
                     const KvSeq* __restrict__ seqs, const DecodeItem* __restrict__ items, AttnDims dims,
                     int max_splits, float* __restrict__ partial, float* __restrict__ out, Activation rounded) {
  release_dependents();
  wait_for_inputs();
  TERN_DYNAMIC_SHARED(unsigned char, tc_smem);
  constexpr int SR = smem_row<D>(), kTcStages = tc_stages<D>();
  constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
  const SegmentBlock sb = segment_block<kTcHeads>(items, dims);
  if (sb.p0 >= sb.item.n_kv) return;
  const DecodeItem item = sb.item;
  const int p0 = sb.p0, p1 = sb.p1, kvh = sb.kvh, h0 = sb.h0, hn = sb.hn;
  const KvSeq seq = seqs[item.seq];
  const int64_t kv_row = static_cast<int64_t>(dims.n_kv_head) * D;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
  const int n_steps = (p1 - p0 + kStepKeys - 1) / kStepKeys;

  __half* qs = reinterpret_cast<__half*>(tc_smem);
  __half* ring = qs + (kTcHeads + warp * kTcStages * 2 * kWarpKeys) * SR;

  // Step j's 16 keys of this warp (K rows, then V rows) into stage j % kTcStages; keys past the
  // segment are zero (their P is 0, and 0 times stale shared memory could be NaN). One commit group
  // per step, empty past the end, so that the wait below counts steps.
  const auto load_step = [&](int j) {
    const int key0 = p0 + j * kStepKeys + warp * kWarpKeys;
    if (j < n_steps && key0 < p1) {
      __half* ks = ring + (j % kTcStages) * 2 * kWarpKeys * SR;
      __half* vs = ks + kWarpKeys * SR;
      constexpr int kPieces = D / 8;  // 16-byte pieces per row
#pragma unroll
      for (int i = lane; i < kWarpKeys * kPieces; i += 32) {
        const int r = i / kPieces, c = (i % kPieces) * 8;
        const int p = key0 + r;
        const bool valid = p < p1;
        const int64_t off = valid ? slot_of(seq, dims.block_size, p) * kv_row + static_cast<int64_t>(kvh) * D + c : 0;
        cp_async16(ks + r * SR + c, k + off, valid);
        cp_async16(vs + r * SR + c, v + off, valid);
      }
    }
    cp_async_commit();
  };
#pragma unroll
  for (int j = 0; j < kTcStages - 1; ++j) load_step(j);

  // The group's query rows, rounded to f16 as q meets an f16 cache (the f32 kernel rounds them the
  // same way); rows past the group are zero.
  for (int i = threadIdx.x; i < kTcHeads * D / 4; i += kTcThreads) {
    const int r = i / (D / 4), c = (i % (D / 4)) * 4;
    float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < hn) x = *reinterpret_cast<const float4*>(q + (static_cast<int64_t>(item.token) * dims.n_head + h0 + r) * D + c);
    *reinterpret_cast<__half2*>(qs + r * SR + c) = __floats2half2_rn(x.x, x.y);
    *reinterpret_cast<__half2*>(qs + r * SR + c + 2) = __floats2half2_rn(x.z, x.w);
  }
  __syncthreads();
  uint32_t qa[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) load_a<SR>(qa[kk], qs, kk * 16, lane);

  // Rows g and g + 8 (heads h0 + g, h0 + g + 8): running max (log2 units), partial sums, outputs.
  const float scale = dims.scale * kLog2e;
  float m[2] = {-FLT_MAX, -FLT_MAX}, l[2] = {0.0f, 0.0f};
  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;

  for (int j = 0; j < n_steps; ++j) {
    const int key0 = p0 + j * kStepKeys + warp * kWarpKeys;
    if (key0 >= p1) break;  // this warp's keys have ended (later steps' are further on)
    load_step(j + kTcStages - 1);
    cp_async_wait<kTcStages - 1>();
    __syncwarp();  // every lane's copies of step j have landed
    const __half* ks = ring + (j % kTcStages) * 2 * kWarpKeys * SR;
    const __half* vs = ks + kWarpKeys * SR;

    // S = Q K^T: 16 heads x 16 keys, two n-tiles of 8 keys.
    float s[2][4];
#pragma unroll
    for (int t = 0; t < 2; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t b[4];
      load_bt<SR>(b, ks, kk * 16, lane);
      mma_16816(s[0], qa[kk], b[0], b[1]);
      mma_16816(s[1], qa[kk], b[2], b[3]);
    }

    // Keys past the segment masked, scale, online softmax.
#pragma unroll
    for (int t = 0; t < 2; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = key0 + t * 8 + tig * 2 + (e & 1);
        s[t][e] = key < p1 ? s[t][e] * scale : -INFINITY;
      }
    }
    float alpha[2];
    online_softmax(s, m, l, alpha);
    scale_rows(o, alpha);

    // O += P V.
    uint32_t pa[4];
    p_fragment(pa, s[0], s[1]);
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b[4];
      load_b<SR>(b, vs, dp * 16, lane);
      mma_16816(o[2 * dp], pa, b[0], b[1]);
      mma_16816(o[2 * dp + 1], pa, b[2], b[3]);
    }
    __syncwarp();  // every lane has read stage j before the next step's copies overwrite it
  }
  cp_async_wait<0>();

  // The four warps' results: each warp's (max, sum) per head row, then its outputs scaled to the
  // block's max into shared memory (over the ring, which every warp has finished with), summed.
  __shared__ float wm[kTcWarps][kTcHeads], wl[kTcWarps][kTcHeads];
  sum_row_quads(l);
  if (tig == 0) wm[warp][g] = m[0], wm[warp][g + 8] = m[1], wl[warp][g] = l[0], wl[warp][g + 8] = l[1];
  __syncthreads();
  float* red = reinterpret_cast<float*>(tc_smem);  // [warp][head row][D]
  const auto block_max = [&](int row) {
    float mb = wm[0][row];
#pragma unroll
    for (int w = 1; w < kTcWarps; ++w) mb = fmaxf(mb, wm[w][row]);
    return mb;
  };
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = g + 8 * r;
    if (row >= hn) continue;
    const float f = exp2f(m[r] - block_max(row));  // 0 for a warp that had no keys (m = -FLT_MAX)
    float* dst = red + (warp * kTcHeads + row) * D + tig * 2;
#pragma unroll
    for (int t = 0; t < D / 8; ++t)
      *reinterpret_cast<float2*>(dst + t * 8) = make_float2(o[t][2 * r] * f, o[t][2 * r + 1] * f);
  }
  __syncthreads();
  // Whole warps take part (hn * D is a multiple of 32), as write_segment needs.
  for (int i = threadIdx.x; i < hn * D; i += kTcThreads) {
    const int h = i / D, c = i % D;
    const float mb = block_max(h);
    float acc = 0.0f, sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kTcWarps; ++w) {
      acc += red[(w * kTcHeads + h) * D + c];
      sum += wl[w][h] * exp2f(wm[w][h] - mb);
    }
    write_segment<D>(sb, dims, max_splits, partial, out, rounded, h, c, acc, mb * kLn2, sum);  // m in natural units
  }
}

// The merge of the segments, unless one segment held every context (written by the split kernel).
template <int D>
void launch_merge(const DecodeItem* items, int n_items, int max_splits, const float* partial, float* out,
                  const AttnDims& dims, const Activation& rounded, cudaStream_t s) {
  if (max_splits == 1) return;
  launch_dependent("decode attention merge", decode_merge_kernel<D>,
                   dim3(static_cast<unsigned>(n_items), static_cast<unsigned>(dims.n_head)), D < 128 ? D : 128, 0, s,
                   items, partial, dims.n_head, max_splits, out, rounded);
}

// Grid: items x (KV heads x blocks per GQA group of `heads_per_block`) x segments.
dim3 decode_grid(int n_items, int max_splits, const AttnDims& dims, int heads_per_block) {
  const int group = dims.n_head / dims.n_kv_head;
  const int chunks = (group + heads_per_block - 1) / heads_per_block;
  return dim3(static_cast<unsigned>(n_items), static_cast<unsigned>(dims.n_kv_head * chunks),
              static_cast<unsigned>(max_splits));
}

template <int D, class CT>
void launch_decode(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs, const DecodeItem* items,
                   int n_items, int max_splits, float* partial, const AttnDims& dims, const Activation& rounded,
                   cudaStream_t s) {
  launch_dependent("decode attention", decode_split_kernel<D, CT>, decode_grid(n_items, max_splits, dims, kMaxHeadsPerBlock),
                   kDecodeThreads, 0, s, q, static_cast<const CT*>(k), static_cast<const CT*>(v), seqs, items, dims,
                   max_splits, partial, out, rounded);
  launch_merge<D>(items, n_items, max_splits, partial, out, dims, rounded, s);
}

template <int D>
void launch_decode_tc(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                      const DecodeItem* items, int n_items, int max_splits, float* partial, const AttnDims& dims,
                      const Activation& rounded, cudaStream_t s) {
  launch_dependent("decode attention (tensor cores)", decode_tc_kernel<D>, decode_grid(n_items, max_splits, dims, kTcHeads),
                   kTcThreads, tc_decode_smem_bytes<D>(), s, q, static_cast<const __half*>(k),
                   static_cast<const __half*>(v), seqs, items, dims, max_splits, partial, out, rounded);
  launch_merge<D>(items, n_items, max_splits, partial, out, dims, rounded, s);
}

template <int D>
void allow_tc_decode_smem() {  // the >48 KB shared memory opt-in
  check(cudaFuncSetAttribute(decode_tc_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(tc_decode_smem_bytes<D>())),
        "decode attention: shared memory opt-in");
}

}  // namespace

void prepare_decode_attention() {
  allow_tc_decode_smem<64>();
  allow_tc_decode_smem<128>();
}

bool decode_supports(int d) { return d == 64 || d == 128 || d == 256; }

size_t decode_partial_floats(int n_items, int max_splits, const AttnDims& dims) {
  return static_cast<size_t>(n_items) * dims.n_head * max_splits * (dims.d + 2);
}

bool decode_tensor_cores() {
  static const bool on = env_switch("TERN_CUDA_TC_DECODE", true);
  return on;
}

void decode_attention(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                      const DecodeItem* items, int n_items, int max_splits, float* partial, const AttnDims& dims,
                      const Activation& rounded, cudaStream_t s) {
  if (n_items == 0) return;
  const bool f16 = dims.cache_type == DType::F16;
  const bool tc = f16 && decode_tensor_cores();
  switch (dims.d) {
    case 64:
      if (tc) return launch_decode_tc<64>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s);
      return f16 ? launch_decode<64, __half>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s)
                 : launch_decode<64, float>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s);
    case 128:
      if (tc) return launch_decode_tc<128>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s);
      return f16 ? launch_decode<128, __half>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s)
                 : launch_decode<128, float>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s);
    default: return f16 ? launch_decode<256, __half>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s)
                        : launch_decode<256, float>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s);
  }
}

}  // namespace tern::cuda
