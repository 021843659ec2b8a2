// Prefill attention over the paged KV cache (ops.h: K/V [head_dim, n_kv_head, slots], blocks named
// by each sequence's block table): FlashAttention-2 (Dao, 2023). A block of 4 warps takes 64
// consecutive query tokens of one sequence and one head, walks the keys in tiles of 64 with an
// online softmax, and never writes the score matrix: S = QK^T and O += PV run on the tensor cores
// (f16 operands, f32 accumulators), P stays in registers between the two products. The blocks of
// the longest contexts (the last tiles of a sequence) are started first, so that the short ones
// fill the end of the grid.
//
// Two instantiations of one kernel differ in the products only:
// - mma.sync m16n8k16 per warp (any GPU from Ampere on): each warp loads its B fragments from
//   shared memory with ldmatrix, twice the bytes per product of a 32-row tile, so that shared
//   memory bandwidth rather than the tensor cores bounds it (H200: 27-43% of PyTorch's SDPA at 2k-8k);
// - wgmma (Hopper, sm_90a): the 4 warps are one warpgroup computing the 64-row tile together, K
//   and V read by the tensor cores from shared memory, Q and P from registers (the accumulators of
//   S are P's A fragments, as with mma.sync). K and V tiles lie in 8 x 8 core matrices (wgmma.cuh).
//
// K and V tiles arrive through a ring of shared-memory buffers, several tiles requested ahead
// (cp.async), one block barrier per tile. The wgmma kernels also overlap within a warpgroup
// (FlashAttention-3, Shah et al. 2024): the scores of tile j and the product P V of tile j - 1 are
// issued together, and tile j's softmax runs on the CUDA cores while the second product runs.
#include <cuda_fp16.h>

#include <algorithm>
#include <cfloat>

#include "backends/cuda/kernels/dependent_launch.cuh"
#include "backends/cuda/kernels/launch.h"
#include "backends/cuda/kernels/paged_kv.cuh"
#include "backends/cuda/kernels/tensor_core.cuh"
#include "backends/cuda/kernels/wgmma.cuh"

namespace tern::cuda {
namespace {

constexpr int kFlashWarps = 4;  // per tile of 64 query rows: one warpgroup
constexpr int kGroupThreads = kFlashWarps * 32;
static_assert(kFlashTileTokens == 16 * kFlashWarps, "a warp's 16 query rows");

// K/V tiles in flight: a ring of `stages` buffers of a K and a V tile each; tile j + stages - 1 is
// requested while tile j is computed on. The H200 measured (bench/gpu/NOTES.md, 2026-11-28) the
// double buffer (stages = 2) bounding the kernel: with one tile in flight, each tile's compute
// (~0.6 us for two groups at D 128) hides less than its load's latency from L2 under load.
constexpr int kMaxFlashStages = 5;
constexpr int kDefaultFlashStages = 5;

// One instantiation of the kernel: head size, the products (wgmma or mma.sync), query tiles per
// block, the schedule (kOverlap: wgmma only, stages >= 3, a tile's softmax under the previous
// tile's P V product) and keys per K/V tile (64; 128 at D 128 with wgmma: half the iterations,
// barriers and softmax reductions per key, m64n128 products for the scores).
template <int kD, bool kTc, int kG, bool kOv, int kK>
struct FlashCfg {
  static constexpr int D = kD, kGroups = kG, kKeys = kK;
  static constexpr bool kWgmma = kTc, kOverlap = kOv;
  static_assert(kTc || !kOv, "mma.sync products are synchronous");
  static_assert(kK == 64 || (kK == 128 && kTc), "128-key tiles take the wgmma products");
  static constexpr int kThreads = kG * kGroupThreads;
  // Halves of one K or V tile in shared memory: padded rows for ldmatrix, or core matrices.
  static constexpr int kTileHalves = kK * (kTc ? kD : smem_row<kD>());
  // Each group's Q (padded rows), and the ring of K and V tiles.
  static constexpr size_t smem_bytes(int stages) {
    return (static_cast<size_t>(kG) * kFlashTileTokens * smem_row<kD>() + 2 * static_cast<size_t>(stages) * kTileHalves) *
           sizeof(__half);
  }
};

// cp_async_wait<n> for a count known at run time (0 <= n <= kMaxFlashStages - 2).
__device__ __forceinline__ void cp_async_wait_upto(int n) {
  static_assert(kMaxFlashStages - 2 == 3, "one case per count");
  switch (n) {
    case 0: cp_async_wait<0>(); break;
    case 1: cp_async_wait<1>(); break;
    case 2: cp_async_wait<2>(); break;
    default: cp_async_wait<3>(); break;
  }
}

// Where 16-byte piece c (elements 8c .. 8c + 7) of key r of a K or V tile lies in shared memory
// (halves): padded rows, or core matrices (wgmma.cuh).
template <int D, bool kWgmma>
__device__ __forceinline__ int kv_smem_offset(int r, int c) {
  if constexpr (kWgmma) return core_tile_offset<D>(r, c);
  else return r * smem_row<D>() + c * 8;
}
// Which (key, piece) the i-th 16-byte load of a tile fetches: for core matrices, eight threads in a
// row fill one core matrix (128 contiguous bytes: no bank conflicts) with piece c of eight keys.
template <int D, bool kWgmma>
__device__ __forceinline__ void kv_piece(int i, int& r, int& c) {
  if constexpr (kWgmma) r = (i / D) * 8 + i % 8, c = (i / 8) % (D / 8);
  else r = i / (D / 8), c = i % (D / 8);
}

// Blocks an SM holds at once, asked of the register allocator: at D 64 two (of 256 threads: at
// most 128 registers each; unbounded, ptxas gives the overlapped wgmma schedule 141 and mma.sync
// 155, against 117 and 128 of the double-buffered kernel before the ring); at D 128 one.
template <int D>
constexpr int kFlashBlocksPerSm = D == 64 ? 2 : 1;

// kGroups tiles per block (consecutive tiles of one sequence, the plan's, flash_tiles_per_block()):
// each group of 4 warps takes one, and the groups share every K and V tile they load, so that a
// tile of keys moved into shared memory serves 64 kGroups query rows. A group whose queries are all
// before a key tile (the first of a pair, at the diagonal) or whose tile is empty still loads and
// waits with the others, and skips the arithmetic.
template <class F>
__global__ void __launch_bounds__(F::kThreads, kFlashBlocksPerSm<F::D>)
    flash_prefill_kernel(const float* __restrict__ q, const __half* __restrict__ k, const __half* __restrict__ v,
                         float* __restrict__ out, const KvSeq* __restrict__ seqs, const FlashTile* __restrict__ tiles,
                         AttnDims dims, int stages, int probe) {
  constexpr int D = F::D, kGroups = F::kGroups, kTileKeys = F::kKeys, kFlashThreads = F::kThreads;
  constexpr bool kWgmma = F::kWgmma, kOverlap = F::kOverlap;
  release_dependents();
  wait_for_inputs();
  TERN_DYNAMIC_SHARED(unsigned char, flash_smem);
  constexpr int SR = smem_row<D>();
  constexpr float kLog2e = 1.4426950408889634f;
  constexpr int kTile = F::kTileHalves;
  const int group = threadIdx.x / kGroupThreads;
  __half* qs = reinterpret_cast<__half*>(flash_smem) + group * kFlashTileTokens * SR;
  __half* kbuf = reinterpret_cast<__half*>(flash_smem) + kGroups * kFlashTileTokens * SR;  // `stages` K tiles
  __half* vbuf = kbuf + stages * kTile;                                                      // and V tiles

  const int block_at = kGroups * (gridDim.x - 1 - blockIdx.x);  // the longest contexts first
  const FlashTile tile = tiles[block_at + group];
  const int h = blockIdx.y, kvh = h / (dims.n_head / dims.n_kv_head);
  const KvSeq seq = seqs[tiles[block_at].seq];
  const int64_t kv_row = static_cast<int64_t>(dims.n_kv_head) * D;
  const int warp = (threadIdx.x / 32) % kFlashWarps, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
  const int last_pos = tile.pos0 + tile.n - 1;  // this group's (-1 for an empty tile)
  int block_last = last_pos;  // the block's: the keys every group may need
#pragma unroll
  for (int i = 0; i < kGroups; ++i)
    if (tiles[block_at + i].n > 0) block_last = max(block_last, tiles[block_at + i].pos0 + tiles[block_at + i].n - 1);
  const int n_key_tiles = block_last / kTileKeys + 1;
  const int my_key_tiles = tile.n > 0 ? last_pos / kTileKeys + 1 : 0;

  // K and V tile j into buffer b through the block table, asynchronously; keys past the tile's last
  // position are zero.
  const auto load_kv = [&](int j, int b) {
    for (int i = threadIdx.x; i < kTileKeys * D / 8; i += kFlashThreads) {
      int r, c;
      kv_piece<D, kWgmma>(i, r, c);
      const int p = j * kTileKeys + r;
      const bool valid = p <= block_last;
      const int64_t off = valid ? slot_of(seq, dims.block_size, p) * kv_row + static_cast<int64_t>(kvh) * D + c * 8 : 0;
      const int at = b * kTile + kv_smem_offset<D, kWgmma>(r, c);
      cp_async16(kbuf + at, k + off, valid);
      cp_async16(vbuf + at, v + off, valid);
    }
    cp_async_commit();
  };
  // Tiles requested ahead of the one computed on: the ring less the buffers in use. The plain
  // schedule reads tile j's K and V in iteration j (one buffer in use); the overlapped one reads
  // tile j's V in iteration j + 1 (two).
  const int ahead = kOverlap ? stages - 2 : stages - 1;
  // Tiles 0 .. ahead - 1 into buffers 0 .. ahead - 1; one commit group per tile, empty past the
  // last, so that every thread counts the same groups.
  for (int t = 0; t < ahead; ++t) {
    if (t < n_key_tiles && (t == 0 || probe != 2)) load_kv(t, t);
    else cp_async_commit();
  }

  // Q tile, rounded to f16 (rows past the tile's tokens are zero and never written back).
  for (int i = threadIdx.x % kGroupThreads; i < kFlashTileTokens * D / 4; i += kGroupThreads) {
    const int r = i / (D / 4), c = (i % (D / 4)) * 4;
    float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < tile.n) x = *reinterpret_cast<const float4*>(q + (static_cast<int64_t>(tile.t0 + r) * dims.n_head + h) * D + c);
    *reinterpret_cast<__half2*>(qs + r * SR + c) = __floats2half2_rn(x.x, x.y);
    *reinterpret_cast<__half2*>(qs + r * SR + c + 2) = __floats2half2_rn(x.z, x.w);
  }
  __syncthreads();

  // This warp's 16 query rows as A fragments, one per 16 dims.
  uint32_t qa[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) load_a<SR>(qa[kk], qs + warp * 16 * SR, kk * 16, lane);

  // Rows g and g + 8 of the warp: their positions, running max (log2 units), partial sums, outputs.
  const int row0 = warp * 16 + g;
  const int qpos[2] = {tile.pos0 + row0, tile.pos0 + row0 + 8};
  const float scale = dims.scale * kLog2e;  // softmax in base 2: exp(x) = exp2(x log2 e)
  float m[2] = {-FLT_MAX, -FLT_MAX}, l[2] = {0.0f, 0.0f};
  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;

  // Scores of key tile j (16 rows x 64 keys per warp, eight n-tiles of 8 keys): causal mask (not
  // needed while every key precedes the tile's first query), scale, and the online softmax, which
  // leaves P in s and the outputs' factor in alpha.
  const auto softmax_tile = [&](float (&s)[kTileKeys / 8][4], int j, float (&alpha)[2]) {
    const int key0 = j * kTileKeys;
    const bool below_diagonal = key0 + kTileKeys - 1 <= tile.pos0;
#pragma unroll
    for (int t = 0; t < kTileKeys / 8; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = key0 + t * 8 + tig * 2 + (e & 1);
        s[t][e] = below_diagonal || key <= qpos[e >> 1] ? s[t][e] * scale : -INFINITY;
      }
    }
    alpha[0] = alpha[1] = 1.0f;
    if (probe != 1) online_softmax(s, m, l, alpha);
  };
  // The wgmma products, issued and committed as one group each (the caller waits): S = Q K^T (the
  // first product writes s: no zeroing between the fence and it), and O += P V with P as A fragments.
  const auto issue_scores = [&](float (&s)[kTileKeys / 8][4], const __half* ks) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) wgmma_m64k16<0>(s, qa[kk], desc_rows_t<D>(ks, kk * 16), kk > 0);
    wgmma_commit();
  };
  const auto issue_pv = [&](const uint32_t (&pa)[kTileKeys / 16][4], const __half* vs) {
#pragma unroll
    for (int kk = 0; kk < kTileKeys / 16; ++kk) wgmma_m64k16<1>(o, pa[kk], desc_rows<D>(vs, kk * 16), true);
    wgmma_commit();
  };
  const auto p_fragments = [&](uint32_t (&pa)[kTileKeys / 16][4], const float (&s)[kTileKeys / 8][4]) {
#pragma unroll
    for (int kk = 0; kk < kTileKeys / 16; ++kk) p_fragment(pa[kk], s[2 * kk], s[2 * kk + 1]);
  };

  // One barrier per tile: after it, tile j is in shared memory (every thread's copies) and every
  // thread is done with the buffer that then receives tile j + ahead.
  int buf = 0, next_buf = ahead;  // j % stages, (j + ahead) % stages
  const auto next_tile = [&](int j) {
    cp_async_wait_upto(ahead - 1);  // groups committed: tiles 0 .. j + ahead - 1
    if constexpr (kWgmma) fence_proxy_async();  // the copies, visible to the tensor cores' reads
    __syncthreads();
    if (j + ahead < n_key_tiles && probe != 2) load_kv(j + ahead, next_buf);
    else cp_async_commit();
    const int b = buf;
    buf = buf + 1 == stages ? 0 : buf + 1;
    next_buf = next_buf + 1 == stages ? 0 : next_buf + 1;
    return b;
  };

  if constexpr (kOverlap) {
    // FlashAttention-3's overlap within a warpgroup: the product O += P V of tile j - 1 runs on the
    // tensor cores while the CUDA cores take the softmax of tile j, whose scores were issued just
    // before it. After the softmax, and the product's end, the outputs take tile j's factor.
    // P of the previous tile, and its V. Before the first tile, P = 0 against the first tile's V
    // (finite: loaded or zero-filled), so that every iteration issues the same products: a wgmma
    // in flight across a branch makes ptxas serialize them all (its warning C7520).
    uint32_t pa[kTileKeys / 16][4];
#pragma unroll
    for (int kk = 0; kk < kTileKeys / 16; ++kk) pa[kk][0] = pa[kk][1] = pa[kk][2] = pa[kk][3] = 0u;
    const __half* prev_vs = vbuf;
    const auto last_pv = [&] {  // the group's last tile's P V
      wgmma_pin(pa);
      wgmma_pin(o);
      wgmma_fence();
      issue_pv(pa, prev_vs);
      wgmma_wait<0>();
      wgmma_pin(o);
    };
    for (int j = 0; j < n_key_tiles; ++j) {
      const int b = next_tile(j);
      if (j >= my_key_tiles) {  // every key from here on is after this group's queries
        if (j == my_key_tiles && j > 0) last_pv();  // before the last tile's buffer is reused
        continue;
      }
      float s[kTileKeys / 8][4];
      wgmma_pin(pa);
      wgmma_pin(o);
      wgmma_fence();
      issue_scores(s, kbuf + b * kTile);
      issue_pv(pa, prev_vs);
      wgmma_wait<1>();  // the scores (committed first)
      wgmma_pin(s);
      float alpha[2];
      softmax_tile(s, j, alpha);
      wgmma_wait<0>();
      wgmma_pin(o);
      wgmma_pin(pa);
      scale_rows(o, alpha);
      p_fragments(pa, s);
      prev_vs = vbuf + b * kTile;
    }
    if (my_key_tiles == n_key_tiles && my_key_tiles > 0) last_pv();
  } else {
    for (int j = 0; j < n_key_tiles; ++j) {
      const int b = next_tile(j);
      if (j >= my_key_tiles) continue;  // every key of this tile is after this group's queries
      const __half* ks = kbuf + b * kTile;
      const __half* vs = vbuf + b * kTile;
      float s[kTileKeys / 8][4];
      if constexpr (kWgmma) {
        wgmma_fence();
        issue_scores(s, ks);
        wgmma_wait<0>();
        wgmma_pin(s);
      } else {
#pragma unroll
        for (int t = 0; t < kTileKeys / 8; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
          for (int np = 0; np < kTileKeys / 16; ++np) {
            uint32_t bf[4];
            load_bt<SR>(bf, ks + np * 16 * SR, kk * 16, lane);
            mma_16816(s[2 * np], qa[kk], bf[0], bf[1]);
            mma_16816(s[2 * np + 1], qa[kk], bf[2], bf[3]);
          }
        }
      }
      float alpha[2];
      softmax_tile(s, j, alpha);
      scale_rows(o, alpha);
      if constexpr (kWgmma) {
        uint32_t pa[kTileKeys / 16][4];
        p_fragments(pa, s);
        wgmma_pin(pa);
        wgmma_pin(o);  // the rescaling above stays before the fence
        wgmma_fence();
        issue_pv(pa, vs);
        wgmma_wait<0>();
        wgmma_pin(o);
      } else {  // V through transposing loads
#pragma unroll
        for (int kk = 0; kk < kTileKeys / 16; ++kk) {
          uint32_t pa[4];
          p_fragment(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
          for (int dp = 0; dp < D / 16; ++dp) {
            uint32_t bf[4];
            load_b<SR>(bf, vs + kk * 16 * SR, dp * 16, lane);
            mma_16816(o[2 * dp], pa, bf[0], bf[1]);
            mma_16816(o[2 * dp + 1], pa, bf[2], bf[3]);
          }
        }
      }
    }
  }

  sum_row_quads(l);
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

// TERN_CUDA_FLASH_PROBE, a measurement switch that makes the results wrong: 1 leaves the online
// softmax out, 2 loads only the first K/V tile; timing the kernel so says what bounds it.
// TERN_CUDA_FLASH_STAGES (2 .. kMaxFlashStages, default kDefaultFlashStages) sets the ring's
// depth, lowered where the device's shared memory per block does not hold it.
int flash_probe() {
  static const int p = env_int("TERN_CUDA_FLASH_PROBE", 0);
  return p;
}

int flash_requested_stages() {
  static const int n = std::clamp(env_int("TERN_CUDA_FLASH_STAGES", kDefaultFlashStages), 2, kMaxFlashStages);
  return n;
}

// The ring's depth for one instantiation: the requested one, or the deepest below it whose shared
// memory the device gives a block (Hopper's 227 KB: 5 at 64 keys, 3 at D 128 with 128 keys;
// Ampere's 99-163 KB: fewer at D 128).
template <class F>
int flash_stages() {
  static const int n = [] {
    int dev = 0, optin = 0;
    check(cudaGetDevice(&dev), "flash attention: device");
    check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "flash attention: device");
    int st = flash_requested_stages();
    while (st > 2 && F::smem_bytes(st) > static_cast<size_t>(optin)) --st;
    return st;
  }();
  return n;
}

template <class F>
void allow_flash_smem() {  // the >48 KB shared memory opt-in
  check(cudaFuncSetAttribute(flash_prefill_kernel<F>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(F::smem_bytes(flash_stages<F>()))),
        "flash attention: shared memory opt-in");
}

// TERN_CUDA_FLASH_OVERLAP=0: the wgmma kernels' plain schedule (each product waited for at once).
bool flash_overlap() {
  static const bool on = env_switch("TERN_CUDA_FLASH_OVERLAP", true);
  return on;
}
// TERN_CUDA_FLASH_KEYS=128: K/V tiles of 128 keys where instantiated (D 128, wgmma, two query
// tiles per block); 64 otherwise.
int flash_keys() {
  static const int n = env_int("TERN_CUDA_FLASH_KEYS", 64) == 128 ? 128 : 64;
  return n;
}

template <class F>
void launch_flash(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs, const FlashTile* tiles,
                  int n_tiles, const AttnDims& dims, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(n_tiles / F::kGroups), static_cast<unsigned>(dims.n_head));
  const int stages = flash_stages<F>();
  const char* what = !F::kWgmma ? "flash attention" : F::kOverlap ? "flash attention (wgmma, overlapped)" : "flash attention (wgmma)";
  launch_dependent(what, flash_prefill_kernel<F>, grid, F::kThreads, F::smem_bytes(stages), s, q,
                   static_cast<const __half*>(k), static_cast<const __half*>(v), out, seqs, tiles, dims, stages,
                   flash_probe());
}

// The wgmma kernels of one key-tile size: overlapped where the ring holds it.
template <int D, int kGroups, int kKeys>
void launch_flash_wgmma(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                        const FlashTile* tiles, int n_tiles, const AttnDims& dims, cudaStream_t s) {
  using Overlapped = FlashCfg<D, true, kGroups, true, kKeys>;
  if (flash_overlap() && flash_stages<Overlapped>() >= 3)
    launch_flash<Overlapped>(q, k, v, out, seqs, tiles, n_tiles, dims, s);
  else launch_flash<FlashCfg<D, true, kGroups, false, kKeys>>(q, k, v, out, seqs, tiles, n_tiles, dims, s);
}

template <int D, int kGroups>
void launch_flash_for(bool wgmma, const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                      const FlashTile* tiles, int n_tiles, const AttnDims& dims, cudaStream_t s) {
  if (!wgmma) return launch_flash<FlashCfg<D, false, kGroups, false, 64>>(q, k, v, out, seqs, tiles, n_tiles, dims, s);
  if constexpr (D == 128 && kGroups == 2) {
    if (flash_keys() == 128) return launch_flash_wgmma<D, kGroups, 128>(q, k, v, out, seqs, tiles, n_tiles, dims, s);
  }
  launch_flash_wgmma<D, kGroups, 64>(q, k, v, out, seqs, tiles, n_tiles, dims, s);
}

template <int D, int kGroups>
void allow_flash_smem_for() {
  allow_flash_smem<FlashCfg<D, false, kGroups, false, 64>>();
  allow_flash_smem<FlashCfg<D, true, kGroups, false, 64>>();
  allow_flash_smem<FlashCfg<D, true, kGroups, true, 64>>();
  if constexpr (D == 128 && kGroups == 2) {
    allow_flash_smem<FlashCfg<D, true, kGroups, false, 128>>();
    allow_flash_smem<FlashCfg<D, true, kGroups, true, 128>>();
  }
}

}  // namespace

// The module carries sm_90a code for compute capability 9.0 only.
bool flash_wgmma() {
  static const bool on = [] {
    int dev = 0, major = 0, minor = 0;
    check(cudaGetDevice(&dev), "flash attention: device");
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "flash attention: device");
    check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev), "flash attention: device");
    return major == 9 && minor == 0 && env_switch("TERN_CUDA_WGMMA", true);
  }();
  return on;
}

int flash_tiles_per_block() {
  static const int n = env_switch("TERN_CUDA_FLASH_PAIRS", true) ? 2 : 1;
  return n;
}

void prepare_flash_attention() {
  flash_wgmma();  // the device query, here rather than during a graph capture
  flash_tiles_per_block();
  flash_overlap();
  flash_keys();
  allow_flash_smem_for<64, 1>();
  allow_flash_smem_for<128, 1>();
  allow_flash_smem_for<64, 2>();
  allow_flash_smem_for<128, 2>();
}

bool flash_supports(int d) { return d == 64 || d == 128; }

void flash_attention(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                     const FlashTile* tiles, int n_tiles, const AttnDims& dims, cudaStream_t s) {
  if (n_tiles == 0) return;
  const int per_block = flash_tiles_per_block();
  if (n_tiles % per_block != 0)
    check(cudaErrorInvalidValue, "flash attention: the tiles do not come in whole blocks (flash_tiles_per_block)");
  const bool wg = flash_wgmma();
  if (dims.d == 64) {
    if (per_block == 2) launch_flash_for<64, 2>(wg, q, k, v, out, seqs, tiles, n_tiles, dims, s);
    else launch_flash_for<64, 1>(wg, q, k, v, out, seqs, tiles, n_tiles, dims, s);
  } else {
    if (per_block == 2) launch_flash_for<128, 2>(wg, q, k, v, out, seqs, tiles, n_tiles, dims, s);
    else launch_flash_for<128, 1>(wg, q, k, v, out, seqs, tiles, n_tiles, dims, s);
  }
}

}  // namespace tern::cuda
