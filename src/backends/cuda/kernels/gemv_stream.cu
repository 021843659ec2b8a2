// GEMV that streams each warp's rows through shared memory (decode and small batches), for the
// weight formats whose 32-element unit is whole 16-byte words: Q4_0, Q4_1 and Q8_0 in the split
// layout, F16 and BF16; and Q4_K/Q5_K, whose 256-element super-blocks are too (144 and 176 bytes).
//
// Why: gemv_kernel (matmul.cu) holds the weights it has asked for in registers, two units of a row
// pair per thread, one batch of loads per block. On the H200 its bytes per second followed the
// bytes each thread had in flight: bf16 (256 per thread) 4.08 TB/s on the output head, q8_0 (136)
// about 2.2 TB/s over a step, q4_0 (72) about 1.0-1.6 TB/s, at 91 registers and five blocks per
// SM. Here a warp copies its rows' units global -> shared with cp.async (which holds no registers)
// kStages chunks ahead of the chunk it multiplies, and walks a contiguous run of row pairs, so that
// the bytes in flight no longer depend on the registers, and a grid of a few blocks per SM keeps
// streaming across rows instead of ending a block after one batch of loads.
//
// A chunk is 32 consecutive units of a row pair (lane l multiplies unit 32 j + l of both rows). The
// copies are coalesced: lane l copies 16-byte words l, l + 32, ... of a row's chunk, so that a warp's
// copy instruction reads 512 contiguous bytes. (Each lane copying its own unit's words instead, as
// at first, has a warp instruction read 16 bytes of every 32 or 64 at units of 2 or 4 words, half or
// a quarter of each sector it asks L2 for; the H200 measured that kernel at ~1.4 TB/s on bf16
// whatever the matrix; TERN_CUDA_STREAM_COALESCED=0 keeps it for comparison.) In the stage, word k
// of unit u lies at kQuant16 u + (k ^ swizzle(u)), so that the eight lanes of a 16-byte shared-memory
// phase reading word k of their units hit eight different bank groups. The chunk's scales are
// copied in 16-byte pieces by the first lanes; every lane reads words other lanes copied, hence the
// __syncwarp() after each wait.
// Q4_K/Q5_K: a chunk is four super-blocks of each row, copied as they lie, and lane l decodes unit
// l % 8 of block l / 8 (quant/k_unit_levels.h, dp4a against Q8_K).
//
// The sums: lane l adds units l, l + 32, ... of a row in order, then the warp's butterfly, as
// gemv_kernel does for rows of up to 64 units; a row's result depends neither on the other rows of
// the launch nor on the other tokens.
#include <algorithm>

#include "backends/cuda/kernels/dependent_launch.cuh"
#include "backends/cuda/kernels/gemv.cuh"
#include "backends/cuda/kernels/tensor_core.cuh"

namespace tern::cuda {
namespace {

constexpr int kStreamWarps = 4;     // warps per block
constexpr int kStreamBlocksPerSm = 4;  // blocks per SM the grid is sized for (16 warps)

constexpr bool is_16bit(DType t) { return t == DType::F16 || t == DType::BF16; }

constexpr bool is_k45(DType t) { return t == DType::Q4_K || t == DType::Q5_K; }

// 16-byte words of a unit's quants, and bytes of its scale (the split legacy formats, F16/BF16).
template <DType T>
constexpr int quant_words() {
  if constexpr (is_16bit(T)) return 4;  // 64 bytes of halves
  else if constexpr (is_k45(T)) return 0;
  else return SplitUnit<T>::kQuant16;
}
template <DType T>
constexpr int scale_bytes() {
  if constexpr (is_16bit(T) || is_k45(T)) return 0;
  else return SplitUnit<T>::kScaleBytes;
}

// A stage of one warp holds one chunk of both rows. Split legacy formats and F16/BF16: each row's
// quants as kQuant16 words x 32 lanes x 16 bytes (lane-private), then each row's 32 scales. Q4_K
// and Q5_K (kBlocks): each row's four super-blocks as they lie in memory (144 or 176 bytes, whole
// 16-byte words; a unit's words are shared by the lanes of its block, so read after the warp sync).
template <DType T>
struct Stage {
  static constexpr bool kBlocks = is_k45(T);
  static constexpr int kBlockBytes = T == DType::Q4_K ? 144 : T == DType::Q5_K ? 176 : 0;
  static constexpr int kQuant16 = quant_words<T>();
  static constexpr int kScaleBytes = scale_bytes<T>();
  static constexpr int kRowQuantBytes = kBlocks ? 4 * kBlockBytes : kQuant16 * 32 * 16;
  static constexpr int kQuantBytes = kRowsPerWarp * kRowQuantBytes;
  static constexpr int kRowScaleBytes = 32 * kScaleBytes;  // 0, 64 or 128: whole 16-byte pieces
  static constexpr int kBytes = kQuantBytes + kRowsPerWarp * kRowScaleBytes;
  // Stages in flight per warp: about 4-9 KB per warp, 74-128 KB per SM at 16 warps (Little's law
  // at ~4.8 TB/s and ~1 us under load asks ~36 KB per SM of 132).
  static constexpr int kStages = is_16bit(T) ? 2 : kQuant16 == 2 ? 3 : 4;
  static constexpr int kWarpBytes = kStages * kBytes;
  static_assert(kRowQuantBytes % 16 == 0 && kBytes % 16 == 0);
};

// Where word k of unit u of a row's chunk lies among the row's kQ * 32 stage words: units of one
// word as they come; of 2 or 4 words with the word index xor-ed by bits of u, so that the units of
// eight consecutive lanes spread over the eight 16-byte bank groups.
template <int kQ>
__device__ __forceinline__ int stage_word(int u, int k) {
  if constexpr (kQ < 2) return kQ * u + k;  // (0: the K-quants' stages, laid out otherwise)
  else return kQ * u + (k ^ ((u / (8 / kQ)) % kQ));
}

template <DType T, int NT, bool kGlu>
__global__ void __launch_bounds__(kStreamWarps * 32, kStreamBlocksPerSm)
    gemv_stream_kernel(GemvArgs args, Activation act, int n_tok, int64_t n_pairs, bool coalesced) {
  using S = Stage<T>;
  constexpr DType A = act_type(T);
  constexpr bool kAffine = T == DType::Q4_1;
  TERN_DYNAMIC_SHARED(uint8_t, stream_smem);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint8_t* ring = stream_smem + warp * S::kWarpBytes;
  // This warp's row pairs: an even share of the launch's, in order.
  const int64_t n_warps = static_cast<int64_t>(gridDim.x) * kStreamWarps;
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kStreamWarps + warp;
  const int64_t p_begin = w * n_pairs / n_warps, p_end = (w + 1) * n_pairs / n_warps;
  const int64_t n_units = args.n_units;
  const int steps = static_cast<int>((n_units + 31) / 32);  // chunks per row pair
  const int n_chunks = static_cast<int>(p_end - p_begin) * steps;
  const int t0 = static_cast<int>(blockIdx.y) * NT;
  const int nt = min(NT, n_tok - t0);

  // Chunk c of this warp into stage `st`; one commit group per call, empty past the last chunk.
  const auto issue = [&](int c, int st) {
    if (c < n_chunks) {
      const int64_t pair = p_begin + c / steps;
      const int64_t j = c % steps, u = 32 * j + lane;
      RowOf rows[kRowsPerWarp];
      bool live[kRowsPerWarp];
      locate_pair(args, 2 * pair, kGlu, rows, live);
      uint8_t* stage = ring + st * S::kBytes;
      if constexpr (S::kBlocks) {
        // Super-blocks 4j .. 4j + 3 of each row (fewer at the row's end), copied as they lie.
        const int64_t blocks = n_units / 8;
        const int pieces = static_cast<int>(min(int64_t{4}, blocks - 4 * j)) * (S::kBlockBytes / 16);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          if (!live[r]) continue;
          const uint8_t* src = rows[r].w.data + rows[r].row * rows[r].w.row_bytes + 4 * j * S::kBlockBytes;
          for (int i = lane; i < pieces; i += 32) cp_async16(stage + r * S::kRowQuantBytes + 16 * i, src + 16 * i, true);
        }
      } else if (coalesced) {
        constexpr int kQ = S::kQuant16;
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          const uint8_t* chunk = rows[r].w.data + rows[r].row * rows[r].w.row_bytes + 32 * j * (kQ * 16);
#pragma unroll
          for (int k = 0; k < kQ; ++k) {
            const int g = lane + 32 * k, cu = g / kQ;  // word g of the chunk: word g % kQ of unit cu
            const bool ok = live[r] && 32 * j + cu < n_units;
            cp_async16(stage + (r * kQ * 32 + stage_word<kQ>(cu, g % kQ)) * 16, chunk + (ok ? 16 * g : 0), ok);
          }
        }
      } else {
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          const bool ok = live[r] && u < n_units;
          const uint8_t* src = rows[r].w.data + rows[r].row * rows[r].w.row_bytes + (ok ? u : 0) * (S::kQuant16 * 16);
#pragma unroll
          for (int k = 0; k < S::kQuant16; ++k)
            cp_async16(stage + ((r * S::kQuant16 + k) * 32 + lane) * 16, src + 16 * k, ok);
        }
      }
      if constexpr (S::kScaleBytes > 0) {
        constexpr int kPieces = S::kRowScaleBytes / 16;  // per row
        const int r = lane / kPieces, piece = lane % kPieces;
        if (r < kRowsPerWarp) {
          // Constant indices into rows[] (a run-time index would put the array in local memory).
          const uint8_t* scales = r == 0 ? rows[0].w.scales : rows[1].w.scales;
          const int64_t row = r == 0 ? rows[0].row : rows[1].row;
          const int64_t off = 32 * j * S::kScaleBytes + 16 * piece;
          const bool ok = (r == 0 ? live[0] : live[1]) && off < n_units * S::kScaleBytes;
          // A split row's scales are n_units * kScaleBytes bytes, one row after the other.
          cp_async16(stage + S::kQuantBytes + r * S::kRowScaleBytes + 16 * piece,
                     scales + row * (n_units * S::kScaleBytes) + (ok ? off : 0), ok);
        }
      }
    }
    cp_async_commit();
  };

  float acc[kRowsPerWarp][NT];
  zero(acc);

  // Chunk c (in stage st) against every token.
  const auto multiply = [&](int c, int st) {
    const int64_t u = 32 * static_cast<int64_t>(c % steps) + lane;
    if (u >= n_units) return;
    const uint8_t* stage = ring + st * S::kBytes;
    const auto word = [&](int r, int k) {
      const int at = coalesced ? r * S::kQuant16 * 32 + stage_word<S::kQuant16>(lane, k) : (r * S::kQuant16 + k) * 32 + lane;
      return *reinterpret_cast<const uint4*>(stage + at * 16);
    };
    if constexpr (S::kBlocks) {
      quant::KUnitLevels kl[kRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)  // a missing row reads its zeros or stale bytes, never written out
        k45_levels_at<T == DType::Q5_K, false>(stage + r * S::kRowQuantBytes + (lane / 8) * S::kBlockBytes, lane % 8,
                                               kl[r]);
      add_k_levels<NT, true>(acc, kl, act, t0, nt, u);
    } else if constexpr (is_16bit(T)) {
      float wv[kRowsPerWarp][32];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        Raw16 raw;
#pragma unroll
        for (int k = 0; k < 4; ++k) raw.v[k] = word(r, k);
        Unit16<T>::widen(raw, wv[r]);
      }
      add_floats<NT, A>(acc, wv, act, t0, nt, u);
    } else {
      Levels lv[kRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        uint4 v[S::kQuant16];
#pragma unroll
        for (int k = 0; k < S::kQuant16; ++k) v[k] = word(r, k);
        const uint8_t* sc = stage + S::kQuantBytes + r * S::kRowScaleBytes + lane * S::kScaleBytes;
        const uint32_t scale = S::kScaleBytes == 2 ? *reinterpret_cast<const uint16_t*>(sc)
                                                   : *reinterpret_cast<const uint32_t*>(sc);
        SplitUnit<T>::levels(v, scale, lv[r]);
      }
      add_levels<NT, 32, kAffine>(acc, lv, act, t0, nt, u);
    }
  };

  // The first kStages chunks are asked for before the wait for the input (weights are written by
  // no kernel), so the stream starts while the kernel before this one finishes.
  if (!args.preload) wait_for_inputs();
#pragma unroll
  for (int st = 0; st < S::kStages; ++st) issue(st, st);
  release_dependents();
  wait_for_inputs();

  int st = 0;
  for (int c = 0; c < n_chunks; ++c) {
    cp_async_wait<S::kStages - 1>();  // chunk c has landed (the kStages - 1 after it may not have)
    __syncwarp();                     // and the scales other lanes copied are visible
    multiply(c, st);
    __syncwarp();  // every lane is done with the stage before it is refilled
    issue(c + S::kStages, st);
    st = st + 1 == S::kStages ? 0 : st + 1;
    if ((c + 1) % steps == 0) {  // the pair's last chunk: its sums are complete
      RowOf rows[kRowsPerWarp];
      bool live[kRowsPerWarp];
      locate_pair(args, 2 * (p_begin + c / steps), kGlu, rows, live);
      warp_sums(acc);
      if (lane == 0) write_pair<NT, kGlu>(args, rows, live, acc, t0, nt);
      zero(acc);
    }
  }
  cp_async_wait<0>();  // no copy outlives the block
}

int multiprocessors() {
  static const int n = [] {
    int dev = 0, count = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev), "multiprocessor count");
    return std::max(count, 1);
  }();
  return n;
}

// Off unless TERN_CUDA_STREAM=1: measured on the H200 (2026-11-28, bench/gpu/NOTES.md) the
// register kernel was as fast or faster for every format at one token (bf16 sweep 0.786 ms against
// 1.492 here; q8_0 0.553 against 0.818; q4_0 0.565 against 0.569; only q4_1 gained, 0.561 -> 0.535)
// and end to end (1.1B Q4_0 1207 tok/s against 1105, BF16 895 against 550). Kept, tested on the
// emulator and the GPU, for the work that would make it pay (why it misses is not yet known).
bool stream_enabled() {
  static const bool on = env_switch("TERN_CUDA_STREAM", false);
  return on;
}
bool stream_coalesced() {
  static const bool on = env_switch("TERN_CUDA_STREAM_COALESCED", true);
  return on;
}

template <DType T>
bool launch_for(const GemvArgs& args, const Activation& x, int64_t n_tok, bool glu, cudaStream_t s) {
  using S = Stage<T>;
  if (x.type != act_type(T)) return false;  // exact (f32) activations: gemv_kernel
  if ((args.n_units * S::kScaleBytes) % 16 != 0) return false;
  if (glu && !is_16bit(T)) return false;
  const int64_t n_pairs = glu ? args.total_rows / 2 : (args.total_rows + 1) / 2;
  if (n_pairs == 0) return true;
  const int64_t want = (n_pairs + kStreamWarps - 1) / kStreamWarps;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(want, int64_t{multiprocessors()} * kStreamBlocksPerSm)), 1);
  const dim3 threads(kStreamWarps * 32);
  const size_t smem = static_cast<size_t>(kStreamWarps) * S::kWarpBytes;
  static_assert(kStreamWarps * S::kWarpBytes <= 48 * 1024, "a block's stages fit the default shared-memory limit");
  const auto go = [&](auto nt) {
    constexpr int NT = decltype(nt)::value;
    const dim3 g(grid.x, static_cast<unsigned>((n_tok + NT - 1) / NT));
    if constexpr (is_16bit(T)) {
      if (glu) {
        launch_dependent("gemv stream (swiglu)", gemv_stream_kernel<T, NT, true>, g, threads, smem, s, args, x,
                         static_cast<int>(n_tok), n_pairs, stream_coalesced());
        return;
      }
    }
    launch_dependent("gemv stream", gemv_stream_kernel<T, NT, false>, g, threads, smem, s, args, x,
                     static_cast<int>(n_tok), n_pairs, stream_coalesced());
  };
  if (n_tok == 1) go(std::integral_constant<int, 1>{});
  else if (n_tok == 2) go(std::integral_constant<int, 2>{});
  else if (n_tok <= 4) go(std::integral_constant<int, 4>{});
  else go(std::integral_constant<int, 8>{});
  return true;
}

}  // namespace

bool launch_gemv_stream(const GemvArgs& args, DType type, uint8_t layout, const Activation& x, int64_t n_tok,
                        bool glu, cudaStream_t s) {
  if (!stream_enabled() || n_tok <= 0) return false;
  const bool split = layout == kSplitLayout;
  switch (type) {
    case DType::F16: return !split && launch_for<DType::F16>(args, x, n_tok, glu, s);
    case DType::BF16: return !split && launch_for<DType::BF16>(args, x, n_tok, glu, s);
    case DType::Q4_0: return split && launch_for<DType::Q4_0>(args, x, n_tok, glu, s);
    case DType::Q4_1: return split && launch_for<DType::Q4_1>(args, x, n_tok, glu, s);
    case DType::Q8_0: return split && launch_for<DType::Q8_0>(args, x, n_tok, glu, s);
    case DType::Q4_K: return !split && launch_for<DType::Q4_K>(args, x, n_tok, glu, s);
    case DType::Q5_K: return !split && launch_for<DType::Q5_K>(args, x, n_tok, glu, s);
    default: return false;
  }
}

}  // namespace tern::cuda
