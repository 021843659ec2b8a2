// Attention over the paged KV cache (ops.h: K/V [head_dim, n_kv_head, slots], blocks named by each
// sequence's block table).
//
// - Prefill: FlashAttention-2 (Dao, 2023). A block of 4 warps takes 64 consecutive query tokens of
//   one sequence and one head, walks the keys in tiles of 64 with an online softmax, and never
//   writes the score matrix: S = QK^T and O += PV run on the tensor cores (mma.sync m16n8k16, f16
//   operands, f32 accumulators), P stays in registers between the two products.
// - Decode: split-KV (FlashDecoding, Dao et al., 2023). Each token's keys are cut into fixed
//   segments of kSplitPositions; one block per (token, KV head, segment) computes that segment's
//   softmax numerator and its max and sum for all the query heads sharing the KV head, and a
//   second kernel merges the segments exactly. The segments are fixed, so a token's result does
//   not depend on how many blocks the batch launched. When no token of the launch has more than one
//   segment (contexts up to kSplitPositions), the first kernel writes the outputs itself, the same
//   bits the merge would give, and the merge is not launched. (Merging in the split kernel's last
//   block for every context, by an atomic count, measured slower at long contexts on an H200: one
//   block per token and KV head merged what the merge kernel spreads over every head.)
#include <cuda_fp16.h>

#include <cfloat>

#include "backends/cuda/kernels/activation.cuh"
#include "backends/cuda/kernels/dependent_launch.cuh"

namespace tern::cuda {
namespace {

__device__ __forceinline__ int64_t slot_of(const KvSeq& s, int block_size, int p) {
  return static_cast<int64_t>(s.block_table[p / block_size]) * block_size + p % block_size;
}

// --- decode: split-KV -----------------------------------------------------------------------

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

template <int D, class CT>
__global__ void __launch_bounds__(kDecodeThreads)
    decode_split_kernel(const float* __restrict__ q, const CT* __restrict__ k, const CT* __restrict__ v,
                        const KvSeq* __restrict__ seqs, const DecodeItem* __restrict__ items, AttnDims dims,
                        int max_splits, float* __restrict__ partial, float* __restrict__ out, Activation rounded) {
  release_dependents();
  wait_for_inputs();
  const DecodeItem item = items[blockIdx.x];
  const int split = blockIdx.z;
  const int p0 = split * kSplitPositions;
  if (p0 >= item.n_kv) return;
  const int p1 = min(p0 + kSplitPositions, item.n_kv), len = p1 - p0;
  const int group = dims.n_head / dims.n_kv_head;
  const int chunks = (group + kMaxHeadsPerBlock - 1) / kMaxHeadsPerBlock;
  const int kvh = blockIdx.y / chunks, chunk = blockIdx.y % chunks;
  const int h0 = kvh * group + chunk * kMaxHeadsPerBlock;
  const int hn = min(kMaxHeadsPerBlock, group - chunk * kMaxHeadsPerBlock);
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
    // Whole warps take part (D is a multiple of 32), as round_into needs.
    for (int c = threadIdx.x; c < D; c += kDecodeThreads) {
      float o = 0.0f;
#pragma unroll
      for (int w = 0; w < kDecodeThreads / 32; ++w) o += red[w][c];
      if (max_splits == 1) {  // the merge of one segment, bit for bit: its weight e^(m - m) is 1
        const float r = o / sum[h];
        out[(static_cast<int64_t>(item.token) * dims.n_head + h0 + h) * D + c] = r;
        round_into(rounded, item.token, static_cast<int64_t>(h0 + h) * D + c, r);
        continue;
      }
      float* dst = partial + ((static_cast<int64_t>(blockIdx.x) * dims.n_head + h0 + h) * max_splits + split) *
                                 partial_stride<D>();
      dst[c] = o;
      if (c == 0) dst[D] = mx[h], dst[D + 1] = sum[h];
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

// --- prefill: FlashAttention-2 on the tensor cores ----------------------------------------------

constexpr int kFlashWarps = 4;
constexpr int kFlashThreads = kFlashWarps * 32;
constexpr int kTileKeys = 64;

template <int D>
constexpr int smem_row() {
  return D + 8;  // halves per shared row: 16 bytes of padding keeps ldmatrix free of bank conflicts
}

template <int D>
constexpr size_t flash_smem_bytes() {  // Q, and K and V twice (double-buffered)
  return 5 * static_cast<size_t>(kFlashTileTokens) * smem_row<D>() * sizeof(__half);
}

// 16 bytes global -> shared without passing through registers; zeros when !valid.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(smem))),
               "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
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

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

template <int D>
__global__ void __launch_bounds__(kFlashThreads)
    flash_prefill_kernel(const float* __restrict__ q, const __half* __restrict__ k, const __half* __restrict__ v,
                         float* __restrict__ out, const KvSeq* __restrict__ seqs, const FlashTile* __restrict__ tiles,
                         AttnDims dims) {
  release_dependents();
  wait_for_inputs();
  extern __shared__ __align__(16) unsigned char flash_smem[];
  constexpr int SR = smem_row<D>();
  constexpr float kLog2e = 1.4426950408889634f;
  __half* qs = reinterpret_cast<__half*>(flash_smem);
  __half* kbuf = qs + kFlashTileTokens * SR;                   // two K tiles, then two V tiles
  __half* vbuf = qs + (kFlashTileTokens + 2 * kTileKeys) * SR;

  const FlashTile tile = tiles[blockIdx.x];
  const int h = blockIdx.y, kvh = h / (dims.n_head / dims.n_kv_head);
  const KvSeq seq = seqs[tile.seq];
  const int64_t kv_row = static_cast<int64_t>(dims.n_kv_head) * D;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
  const int last_pos = tile.pos0 + tile.n - 1;
  const int n_key_tiles = last_pos / kTileKeys + 1;

  // K and V tile j into buffer b through the block table, asynchronously; keys past the tile's last
  // position are zero.
  const auto load_kv = [&](int j, int b) {
    for (int i = threadIdx.x; i < kTileKeys * D / 8; i += kFlashThreads) {
      const int r = i / (D / 8), c = (i % (D / 8)) * 8;
      const int p = j * kTileKeys + r;
      const bool valid = p <= last_pos;
      const int64_t off = valid ? slot_of(seq, dims.block_size, p) * kv_row + static_cast<int64_t>(kvh) * D + c : 0;
      cp_async16(kbuf + (b * kTileKeys + r) * SR + c, k + off, valid);
      cp_async16(vbuf + (b * kTileKeys + r) * SR + c, v + off, valid);
    }
    cp_async_commit();
  };
  load_kv(0, 0);

  // Q tile, rounded to f16 (rows past the tile's tokens are zero and never written back).
  for (int i = threadIdx.x; i < kFlashTileTokens * D / 4; i += kFlashThreads) {
    const int r = i / (D / 4), c = (i % (D / 4)) * 4;
    float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < tile.n) x = *reinterpret_cast<const float4*>(q + (static_cast<int64_t>(tile.t0 + r) * dims.n_head + h) * D + c);
    *reinterpret_cast<__half2*>(qs + r * SR + c) = __floats2half2_rn(x.x, x.y);
    *reinterpret_cast<__half2*>(qs + r * SR + c + 2) = __floats2half2_rn(x.z, x.w);
  }
  __syncthreads();

  // This warp's 16 query rows as A fragments, one per 16 dims.
  uint32_t qa[D / 16][4];
  {
    const int mi = lane / 8, r = warp * 16 + (mi & 1) * 8 + lane % 8, c = (mi >> 1) * 8;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) ldmatrix_x4(qa[kk], qs + r * SR + kk * 16 + c);
  }

  // Rows g and g + 8 of the warp: their positions, running max (log2 units), partial sums, outputs.
  const int row0 = warp * 16 + g;
  const int qpos[2] = {tile.pos0 + row0, tile.pos0 + row0 + 8};
  const float scale = dims.scale * kLog2e;  // softmax in base 2: exp(x) = exp2(x log2 e)
  float m[2] = {-FLT_MAX, -FLT_MAX}, l[2] = {0.0f, 0.0f};
  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;

  for (int j = 0; j < n_key_tiles; ++j) {
    // The next tile's loads overlap this tile's arithmetic.
    if (j + 1 < n_key_tiles) {
      load_kv(j + 1, (j + 1) & 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const __half* ks = kbuf + (j & 1) * kTileKeys * SR;
    const __half* vs = vbuf + (j & 1) * kTileKeys * SR;
    const int key0 = j * kTileKeys;

    // S = Q K^T: 16 rows x 64 keys per warp, eight n-tiles of 8 keys.
    float s[kTileKeys / 8][4];
#pragma unroll
    for (int t = 0; t < kTileKeys / 8; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.0f;
    {
      const int mi = lane / 8, kr = (mi >> 1) * 8 + lane % 8, kc = (mi & 1) * 8;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int np = 0; np < kTileKeys / 16; ++np) {
          uint32_t b[4];
          ldmatrix_x4(b, ks + (np * 16 + kr) * SR + kk * 16 + kc);
          mma_16816(s[2 * np], qa[kk], b[0], b[1]);
          mma_16816(s[2 * np + 1], qa[kk], b[2], b[3]);
        }
      }
    }

    // Causal mask, scale, online softmax (each row's four threads agree through shuffles).
    float tile_max[2] = {-FLT_MAX, -FLT_MAX};
#pragma unroll
    for (int t = 0; t < kTileKeys / 8; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = key0 + t * 8 + tig * 2 + (e & 1);
        const float x = key <= qpos[e >> 1] ? s[t][e] * scale : -INFINITY;
        s[t][e] = x;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], x);
      }
    }
    float alpha[2];
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
    for (int t = 0; t < kTileKeys / 8; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[t][e] - m[e >> 1]);
        s[t][e] = p;
        l[e >> 1] += p;
      }
    }
#pragma unroll
    for (int t = 0; t < D / 8; ++t) {
      o[t][0] *= alpha[0], o[t][1] *= alpha[0];
      o[t][2] *= alpha[1], o[t][3] *= alpha[1];
    }

    // O += P V: P from the score registers as A fragments, V through transposing loads.
    {
      const int mi = lane / 8, vr = (mi & 1) * 8 + lane % 8, vc = (mi >> 1) * 8;
#pragma unroll
      for (int kk = 0; kk < kTileKeys / 16; ++kk) {
        const uint32_t pa[4] = {pack_half2(s[2 * kk][0], s[2 * kk][1]), pack_half2(s[2 * kk][2], s[2 * kk][3]),
                                pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, vs + (kk * 16 + vr) * SR + dp * 16 + vc);
          mma_16816(o[2 * dp], pa, b[0], b[1]);
          mma_16816(o[2 * dp + 1], pa, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // before the next iteration's prefetch overwrites this buffer
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + 8 * r;
    if (row >= tile.n) continue;
    float* dst = out + (static_cast<int64_t>(tile.t0 + row) * dims.n_head + h) * D;
    const float inv = 1.0f / l[r];
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
      *reinterpret_cast<float2*>(dst + j * 8 + tig * 2) = make_float2(o[j][2 * r] * inv, o[j][2 * r + 1] * inv);
  }
}

template <int D, class CT>
void launch_decode(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs, const DecodeItem* items,
                   int n_items, int max_splits, float* partial, const AttnDims& dims, const Activation& rounded,
                   cudaStream_t s) {
  const int group = dims.n_head / dims.n_kv_head;
  const int chunks = (group + kMaxHeadsPerBlock - 1) / kMaxHeadsPerBlock;
  const dim3 grid(static_cast<unsigned>(n_items), static_cast<unsigned>(dims.n_kv_head * chunks),
                  static_cast<unsigned>(max_splits));
  launch_dependent("decode attention", decode_split_kernel<D, CT>, grid, kDecodeThreads, 0, s, q,
                   static_cast<const CT*>(k), static_cast<const CT*>(v), seqs, items, dims, max_splits, partial, out,
                   rounded);
  if (max_splits == 1) return;  // written by the kernel above
  launch_dependent("decode attention merge", decode_merge_kernel<D>,
                   dim3(static_cast<unsigned>(n_items), static_cast<unsigned>(dims.n_head)), D < 128 ? D : 128, 0, s,
                   items, partial, dims.n_head, max_splits, out, rounded);
}

template <int D>
void allow_flash_smem() {  // the >48 KB shared memory opt-in
  check(cudaFuncSetAttribute(flash_prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(flash_smem_bytes<D>())),
        "flash attention: shared memory opt-in");
}

template <int D>
void launch_flash(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs, const FlashTile* tiles,
                  int n_tiles, const AttnDims& dims, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(dims.n_head));
  launch_dependent("flash attention", flash_prefill_kernel<D>, grid, kFlashThreads, flash_smem_bytes<D>(), s, q,
                   static_cast<const __half*>(k), static_cast<const __half*>(v), out, seqs, tiles, dims);
}

}  // namespace

void prepare_kernels() {
  allow_flash_smem<64>();
  allow_flash_smem<128>();
}

bool flash_supports(int d) { return d == 64 || d == 128; }
bool decode_supports(int d) { return d == 64 || d == 128 || d == 256; }

size_t decode_partial_floats(int n_items, int max_splits, const AttnDims& dims) {
  return static_cast<size_t>(n_items) * dims.n_head * max_splits * (dims.d + 2);
}

void flash_attention(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                     const FlashTile* tiles, int n_tiles, const AttnDims& dims, cudaStream_t s) {
  if (n_tiles == 0) return;
  if (dims.d == 64) launch_flash<64>(q, k, v, out, seqs, tiles, n_tiles, dims, s);
  else launch_flash<128>(q, k, v, out, seqs, tiles, n_tiles, dims, s);
}

void decode_attention(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                      const DecodeItem* items, int n_items, int max_splits, float* partial, const AttnDims& dims,
                      const Activation& rounded, cudaStream_t s) {
  if (n_items == 0) return;
  const bool f16 = dims.cache_type == DType::F16;
  switch (dims.d) {
    case 64: return f16 ? launch_decode<64, __half>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s)
                        : launch_decode<64, float>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s);
    case 128: return f16 ? launch_decode<128, __half>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s)
                         : launch_decode<128, float>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s);
    default: return f16 ? launch_decode<256, __half>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s)
                        : launch_decode<256, float>(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, rounded, s);
  }
}

}  // namespace tern::cuda
