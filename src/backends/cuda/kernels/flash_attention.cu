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
#include <cuda_fp16.h>

#include <cfloat>
#include <cstdlib>

#include "backends/cuda/kernels/dependent_launch.cuh"
#include "backends/cuda/kernels/launch.h"
#include "backends/cuda/kernels/paged_kv.cuh"
#include "backends/cuda/kernels/tensor_core.cuh"
#include "backends/cuda/kernels/wgmma.cuh"

namespace tern::cuda {
namespace {

constexpr int kFlashWarps = 4;  // per tile of 64 query rows: one warpgroup
constexpr int kGroupThreads = kFlashWarps * 32;
constexpr int kTileKeys = 64;
static_assert(kFlashTileTokens == 16 * kFlashWarps, "a warp's 16 query rows");

// Halves of one K or V tile in shared memory: padded rows for ldmatrix, or core matrices.
template <int D, bool kWgmma>
constexpr int kv_tile_halves() {
  return kTileKeys * (kWgmma ? D : smem_row<D>());
}
template <int D, bool kWgmma, int kGroups>
constexpr size_t flash_smem_bytes() {  // each group's Q (padded rows), and K and V twice (double-buffered)
  return (static_cast<size_t>(kGroups) * kFlashTileTokens * smem_row<D>() + 4 * kv_tile_halves<D, kWgmma>()) *
         sizeof(__half);
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

// kGroups tiles per block (consecutive tiles of one sequence, the plan's, flash_tiles_per_block()):
// each group of 4 warps takes one, and the groups share every K and V tile they load, so that a
// tile of keys moved into shared memory serves 64 kGroups query rows. A group whose queries are all
// before a key tile (the first of a pair, at the diagonal) or whose tile is empty still loads and
// waits with the others, and skips the arithmetic.
template <int D, bool kWgmma, int kGroups>
__global__ void __launch_bounds__(kGroups * kGroupThreads)
    flash_prefill_kernel(const float* __restrict__ q, const __half* __restrict__ k, const __half* __restrict__ v,
                         float* __restrict__ out, const KvSeq* __restrict__ seqs, const FlashTile* __restrict__ tiles,
                         AttnDims dims, int probe) {
  constexpr int kFlashThreads = kGroups * kGroupThreads;
  release_dependents();
  wait_for_inputs();
  TERN_DYNAMIC_SHARED(unsigned char, flash_smem);
  constexpr int SR = smem_row<D>();
  constexpr float kLog2e = 1.4426950408889634f;
  constexpr int kTile = kv_tile_halves<D, kWgmma>();
  const int group = threadIdx.x / kGroupThreads;
  __half* qs = reinterpret_cast<__half*>(flash_smem) + group * kFlashTileTokens * SR;
  __half* kbuf = reinterpret_cast<__half*>(flash_smem) + kGroups * kFlashTileTokens * SR;  // two K tiles, two V
  __half* vbuf = kbuf + 2 * kTile;

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
  load_kv(0, 0);

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

  for (int j = 0; j < n_key_tiles; ++j) {
    // The next tile's loads overlap this tile's arithmetic.
    if (j + 1 < n_key_tiles && probe != 2) {
      load_kv(j + 1, (j + 1) & 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    if constexpr (kWgmma) fence_proxy_async();  // the copies, visible to the tensor cores' reads
    __syncthreads();
    const __half* ks = kbuf + (j & 1) * kTile;
    const __half* vs = vbuf + (j & 1) * kTile;
    const int key0 = j * kTileKeys;
    if (j >= my_key_tiles) {  // every key of this tile is after this group's queries
      __syncthreads();
      continue;
    }

    // S = Q K^T: 16 rows x 64 keys per warp, eight n-tiles of 8 keys.
    float s[kTileKeys / 8][4];
    if constexpr (kWgmma) {  // the first product writes s (no zeroing between the fence and it)
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) wgmma_m64k16<0>(s, qa[kk], desc_rows_t<D>(ks, kk * 16), kk > 0);
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_pin(s);
    } else {
#pragma unroll
      for (int t = 0; t < kTileKeys / 8; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int np = 0; np < kTileKeys / 16; ++np) {
          uint32_t b[4];
          load_bt<SR>(b, ks + np * 16 * SR, kk * 16, lane);
          mma_16816(s[2 * np], qa[kk], b[0], b[1]);
          mma_16816(s[2 * np + 1], qa[kk], b[2], b[3]);
        }
      }
    }

    // Causal mask (not needed while every key precedes the tile's first query), scale, online
    // softmax.
    const bool below_diagonal = key0 + kTileKeys - 1 <= tile.pos0;
#pragma unroll
    for (int t = 0; t < kTileKeys / 8; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = key0 + t * 8 + tig * 2 + (e & 1);
        s[t][e] = below_diagonal || key <= qpos[e >> 1] ? s[t][e] * scale : -INFINITY;
      }
    }
    if (probe != 1) {
      float alpha[2];
      online_softmax(s, m, l, alpha);
      scale_rows(o, alpha);
    }

    // O += P V: P from the score registers as A fragments.
    if constexpr (kWgmma) {
      uint32_t pa[kTileKeys / 16][4];
#pragma unroll
      for (int kk = 0; kk < kTileKeys / 16; ++kk) p_fragment(pa[kk], s[2 * kk], s[2 * kk + 1]);
      wgmma_pin(pa);
      wgmma_pin(o);  // the rescaling above stays before the fence
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kTileKeys / 16; ++kk) wgmma_m64k16<1>(o, pa[kk], desc_rows<D>(vs, kk * 16), true);
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_pin(o);
    } else {  // V through transposing loads
#pragma unroll
      for (int kk = 0; kk < kTileKeys / 16; ++kk) {
        uint32_t pa[4];
        p_fragment(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t b[4];
          load_b<SR>(b, vs + kk * 16 * SR, dp * 16, lane);
          mma_16816(o[2 * dp], pa, b[0], b[1]);
          mma_16816(o[2 * dp + 1], pa, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // before the next iteration's prefetch overwrites this buffer
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
int flash_probe() {
  static const int p = [] {
    const char* v = std::getenv("TERN_CUDA_FLASH_PROBE");
    return v ? std::atoi(v) : 0;
  }();
  return p;
}

template <int D, bool kWgmma, int kGroups>
void allow_flash_smem() {  // the >48 KB shared memory opt-in
  check(cudaFuncSetAttribute(flash_prefill_kernel<D, kWgmma, kGroups>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(flash_smem_bytes<D, kWgmma, kGroups>())),
        "flash attention: shared memory opt-in");
}

template <int D, bool kWgmma, int kGroups>
void launch_flash(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs, const FlashTile* tiles,
                  int n_tiles, const AttnDims& dims, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(n_tiles / kGroups), static_cast<unsigned>(dims.n_head));
  launch_dependent(kWgmma ? "flash attention (wgmma)" : "flash attention", flash_prefill_kernel<D, kWgmma, kGroups>,
                   grid, kGroups * kGroupThreads, flash_smem_bytes<D, kWgmma, kGroups>(), s, q,
                   static_cast<const __half*>(k), static_cast<const __half*>(v), out, seqs, tiles, dims, flash_probe());
}

template <int D, int kGroups>
void launch_flash_for(bool wgmma, const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                      const FlashTile* tiles, int n_tiles, const AttnDims& dims, cudaStream_t s) {
  (wgmma ? launch_flash<D, true, kGroups> : launch_flash<D, false, kGroups>)(q, k, v, out, seqs, tiles, n_tiles, dims,
                                                                              s);
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
  allow_flash_smem<64, false, 1>();
  allow_flash_smem<128, false, 1>();
  allow_flash_smem<64, true, 1>();
  allow_flash_smem<128, true, 1>();
  allow_flash_smem<64, false, 2>();
  allow_flash_smem<128, false, 2>();
  allow_flash_smem<64, true, 2>();
  allow_flash_smem<128, true, 2>();
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
