// AVX-512 (F, BW, VL) with VNNI variant. This file alone is compiled with those flags (plus AVX2, FMA,
// F16C) and is reached only through kernels(Isa::Avx512) after a CPUID check; its kernels are
// kernels_x86.inc's with the integer multiply-add as one vpdpbusd, plus a 512-bit prefill GEMM.
#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/repack.h"

#if defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
// GCC 12 reports its own _mm512_undefined_* placeholders inside these intrinsics as uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "quant/k_scales.h"

namespace tern::cpu {
namespace avx512 {
namespace {

// vpdpbusd: four u8*s8 products summed into each int32 lane, no intermediate saturation; for the
// level ranges used the AVX2 pair sums never saturate either, so the lanes are identical.
inline __m256i dot_u8_s8_i32(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }

inline __m256i dot_u8_s8_acc(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }

#include "backends/cpu/kernels/kernels_x86.inc"

// --- Prefill GEMM on unpacked panels (AVX-512 only) ------------------------------------------------
// A panel of 8 weight rows is unpacked once per matmul into levels (L1/L2-resident) and f32 scales,
// then meets every token. Two rows share a 512-bit vector (row 2p in lanes 0..7, row 2p+1 in lanes
// 8..15) against the token's block broadcast to both halves, so one vpdpbusd does two rows. Every
// (row, token) keeps its own eight lanes, accumulated block by block with the same FMA as the
// single dot: the results are bit-identical to dot_one.
//
// vpdpbusd multiplies unsigned by signed bytes. Q4_1's levels are unsigned (0..15) against signed
// activations. Q4_0's (-8..7) and Q8_0's levels are signed, so the activation enters as a + 128 and
// the panel keeps -128 times each row's per-lane level sums as the accumulator vpdpbusd starts
// from: the same int32 lanes as ggml's sign trick, with no extra instruction per token.
template <DType W>
struct PanelType;
template <>
struct PanelType<DType::Q4_0> {
  static constexpr size_t kW = 18, kA = 34, kAq = 2;  // weight block, activation block, its levels' offset
  static constexpr bool kSignedLevels = true, kMins = false;
  static void unpack(const uint8_t* w, int8_t* levels, float* d, float*) {
    *d = h2f(w);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(levels), _mm256_sub_epi8(nibbles_to_bytes(w + 2), _mm256_set1_epi8(8)));
  }
};
template <>
struct PanelType<DType::Q4_1> {
  static constexpr size_t kW = 20, kA = 36, kAq = 4;
  static constexpr bool kSignedLevels = false, kMins = true;
  static void unpack(const uint8_t* w, int8_t* levels, float* d, float* m) {
    *d = h2f(w);
    *m = h2f(w + 2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(levels), nibbles_to_bytes(w + 4));
  }
};
template <>
struct PanelType<DType::Q5_0> {  // levels (nibble | fifth bit << 4) - 16, signed as Q4_0's
  static constexpr size_t kW = 22, kA = 34, kAq = 2;
  static constexpr bool kSignedLevels = true, kMins = false;
  static void unpack(const uint8_t* w, int8_t* levels, float* d, float*) {
    *d = h2f(w);
    const __m256i q = _mm256_or_si256(nibbles_to_bytes(w + 6), fifth_bits(w + 2));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(levels), _mm256_sub_epi8(q, _mm256_set1_epi8(16)));
  }
};
template <>
struct PanelType<DType::Q5_1> {  // levels 0..31 and a min, as Q4_1's
  static constexpr size_t kW = 24, kA = 36, kAq = 4;
  static constexpr bool kSignedLevels = false, kMins = true;
  static void unpack(const uint8_t* w, int8_t* levels, float* d, float* m) {
    *d = h2f(w);
    *m = h2f(w + 2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(levels), _mm256_or_si256(nibbles_to_bytes(w + 8), fifth_bits(w + 4)));
  }
};
template <>
struct PanelType<DType::Q8_0> {
  static constexpr size_t kW = 34, kA = 34, kAq = 2;
  static constexpr bool kSignedLevels = true, kMins = false;
  static void unpack(const uint8_t* w, int8_t* levels, float* d, float*) {
    *d = h2f(w);
    std::memcpy(levels, w + 2, 32);
  }
};

struct PanelBuf {
  std::vector<int8_t> levels;  // [block][pair][2 rows][32]
  std::vector<int32_t> bias;   // [block][pair][16 lanes]: -128 * per-lane level sums (signed levels)
  std::vector<float> d, m;     // [block][8 rows]
};

// prep: per token, nb activation scales (then, for Q4_1, nb block sums); prep_stride floats apart.
template <class P, int NT>
void panel_tile(const PanelBuf& pb, int64_t nb, int64_t n_rows, const uint8_t* a, size_t a_stride,
                const float* prep, int64_t prep_stride, float* y, size_t y_stride) {
  __m512 acc[4][NT];
  __m256 mins[NT];
  for (int p = 0; p < 4; ++p)
    for (int t = 0; t < NT; ++t) acc[p][t] = _mm512_setzero_ps();
  for (int t = 0; t < NT; ++t) mins[t] = _mm256_setzero_ps();
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    const __m512 d8 = _mm512_castps256_ps512(_mm256_loadu_ps(&pb.d[static_cast<size_t>(b * 8)]));
    const int8_t* lv = &pb.levels[static_cast<size_t>(b * 256)];
    const int32_t* bias = P::kSignedLevels ? &pb.bias[static_cast<size_t>(b * 64)] : nullptr;
    // The NT tokens' blocks (a + 128 when the levels are signed) and scales, then pair by pair.
    __m512i av[NT];
    __m512 dat[NT];
    for (int t = 0; t < NT; ++t) {
      av[t] = _mm512_broadcast_i64x4(load32(a + t * a_stride + b * P::kA + P::kAq));
      if constexpr (P::kSignedLevels) av[t] = _mm512_xor_si512(av[t], flip);
      dat[t] = _mm512_set1_ps(prep[t * prep_stride + b]);
      if constexpr (P::kMins)
        mins[t] = _mm256_fmadd_ps(_mm256_loadu_ps(&pb.m[static_cast<size_t>(b * 8)]),
                                  _mm256_set1_ps(prep[t * prep_stride + nb + b]), mins[t]);
    }
    for (int p = 0; p < 4; ++p) {
      const __m512 dpair = _mm512_permutexvar_ps(
          _mm512_set_epi32(2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p,
                           2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p),
          d8);
      const __m512i w = _mm512_loadu_si512(lv + p * 64);
      for (int t = 0; t < NT; ++t) {
        const __m512i isum = P::kSignedLevels ? _mm512_dpbusd_epi32(_mm512_loadu_si512(bias + p * 16), av[t], w)
                                              : _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, av[t]);
        acc[p][t] = _mm512_fmadd_ps(_mm512_mul_ps(dpair, dat[t]), _mm512_cvtepi32_ps(isum), acc[p][t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) {
    float m8[8];
    _mm256_storeu_ps(m8, mins[t]);
    for (int64_t r = 0; r < n_rows; ++r) {
      const __m512 v = acc[r / 2][t];
      const __m256 half = r % 2 ? _mm512_extractf32x8_ps(v, 1) : _mm512_castps512_ps256(v);
      y[t * y_stride + r] = P::kMins ? hsum(half) + m8[r] : hsum(half);
    }
  }
}

constexpr int kTileTokens = 4;

template <DType W>
void gemm_prepare(const void* va, size_t a_stride, int64_t n_tok, int64_t n, float* prep) {
  using P = PanelType<W>;
  const int64_t nb = n / 32, per_tok = nb * (P::kMins ? 2 : 1);
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* ab = static_cast<const uint8_t*>(va) + t * a_stride + b * P::kA;
      prep[t * per_tok + b] = h2f(ab);
      if constexpr (P::kMins) prep[t * per_tok + nb + b] = h2f(ab + 2);
    }
}

template <DType W>
void gemm_panel(const void* vw, size_t w_stride, int64_t n_rows, const void* va, size_t a_stride, const float* prep,
                int64_t n_tok, int64_t n, float* y, size_t y_stride) {
  using P = PanelType<W>;
  const int64_t nb = n / 32, per_tok = nb * (P::kMins ? 2 : 1);
  thread_local PanelBuf pb;
  pb.levels.assign(static_cast<size_t>(nb * 256), 0);
  pb.d.assign(static_cast<size_t>(nb * 8), 0.0f);
  pb.m.assign(static_cast<size_t>(nb * 8), 0.0f);
  for (int64_t r = 0; r < n_rows; ++r) {
    const auto* w = static_cast<const uint8_t*>(vw) + r * w_stride;
    for (int64_t b = 0; b < nb; ++b)
      P::unpack(w + b * P::kW, &pb.levels[static_cast<size_t>(b * 256 + (r / 2) * 64 + (r % 2) * 32)],
                &pb.d[static_cast<size_t>(b * 8 + r)], &pb.m[static_cast<size_t>(b * 8 + r)]);
  }
  if constexpr (P::kSignedLevels) {
    pb.bias.resize(static_cast<size_t>(nb * 64));
    const __m512i u128 = _mm512_set1_epi8(static_cast<char>(0x80));  // as u8: 128
    for (int64_t i = 0; i < nb * 4; ++i) {
      const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u128, _mm512_loadu_si512(&pb.levels[static_cast<size_t>(i * 64)]));
      _mm512_storeu_si512(&pb.bias[static_cast<size_t>(i * 16)], _mm512_sub_epi32(_mm512_setzero_si512(), sums));
    }
  }
  const auto* a = static_cast<const uint8_t*>(va);
  int64_t t = 0;
  for (; t + kTileTokens <= n_tok; t += kTileTokens)
    panel_tile<P, kTileTokens>(pb, nb, n_rows, a + t * a_stride, a_stride, prep + t * per_tok, per_tok, y + t * y_stride, y_stride);
  for (; t < n_tok; ++t)
    panel_tile<P, 1>(pb, nb, n_rows, a + t * a_stride, a_stride, prep + t * per_tok, per_tok, y + t * y_stride, y_stride);
}

// --- Prefill GEMM on repacked groups, two groups (16 rows) per 512-bit vector -----------------------
// Lanes 0..7 carry group g's rows, 8..15 group g+1's; every lane does exactly what the 256-bit
// kernel's lane does (same integer sums, same FMA per block), so the results are the same bits.
inline __m512i load_pair(const uint8_t* lo, const uint8_t* hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(load32(lo)), load32(hi), 1);
}
inline __m512 scales_pair(const uint8_t* lo, const uint8_t* hi) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo)))),
                            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hi))), 1);
}

// A pair tile reads groups g and g + 1 side by side, block by block, and the next tile reads g + 2
// and g + 3 (pair_tiles). Near the groups' end, kPrefetchAhead bytes on from g's block is g + 1's
// start, which this tile has read already, and from g + 1's block g + 2's: past the end each stream
// asks for the next pair's lines at that offset instead, so the next tile starts with both its
// streams in flight (a decode GEMV spends up to a tenth of its bytes there on 2048-wide rows).
// p0, p1: where the tile reads next in groups g and g + 1, `offset` bytes into them; kBytes: how
// far it reads before the next call.
template <int64_t kBytes, int64_t kDistance, int kHint>
[[gnu::always_inline]] inline void prefetch_pair_at(const uint8_t* p0, const uint8_t* p1, int64_t offset,
                                                    int64_t group_bytes) {
  // k = (offset + kDistance) / group_bytes pairs on: pair g + 2k's streams lie k group sizes past
  // where g's and g + 1's would (a distance may exceed a group: Q4_0 rows of 2048 are 9216 bytes).
  int64_t past = 0;
  for (int64_t c = offset + kDistance; c >= group_bytes; c -= group_bytes) past += group_bytes;
  prefetch_ahead<kBytes, kDistance, kHint>(p0 + past);
  prefetch_ahead<kBytes, kDistance, kHint>(p1 + past);
}
// kPrefetchAhead into L1 and, in the pair's first token tile (kStream), which reads it from memory,
// kPrefetchFar into L2 as well (the later tiles of a prefill find the pair in L2, and those
// prefetches cost a prefill 10%).
template <int64_t kBytes, bool kStream>
[[gnu::always_inline]] inline void prefetch_pair_ahead(const uint8_t* p0, const uint8_t* p1, int64_t offset,
                                                       int64_t group_bytes) {
  prefetch_pair_at<kBytes, kPrefetchAhead, _MM_HINT_T0>(p0, p1, offset, group_bytes);
  if constexpr (kStream) prefetch_pair_at<kBytes, kPrefetchFar, _MM_HINT_T2>(p0, p1, offset, group_bytes);
}

// Q4_0 (kind 0), Q8_0 (kind 1) or Q4_1 (kind 2) groups g, g + 1 against NT tokens. Q4_0's unsigned
// nibbles meet the signed activations, each lane starting from -8 times the block's activation sum.
// Q8_0's signed levels are flipped to unsigned w + 128 as they are loaded (one xor) and meet the
// signed activations the same way, each lane starting from -128 times the activation sum: a bias
// per token and block, computed once per matmul, where flipping the activations instead would
// need each weight row's level sum, a chain of eight multiply-adds per block that every token's
// sums wait for. Q4_1's unsigned nibbles start from zero, and each lane sums its row's min times
// the activation sum apart.
template <int kKind, int NT, bool kStream>
void x8_pair_tile(const uint8_t* w0, const uint8_t* w1, int64_t nb, const uint8_t* a, size_t a_stride, const float* da,
                  const int32_t* bias, const float* sa, int64_t stat_stride, float* y, size_t y_stride) {
  constexpr size_t kBlock = kKind == 0 ? 144 : kKind == 1 ? 272 : 160;
  constexpr size_t kActBlock = kKind == 2 ? 36 : 34, kActLevels = kKind == 2 ? 4 : 2;
  constexpr size_t kLevels = kKind == 2 ? 32 : 16;  // where a block's levels start
  __m512 acc[NT];
  for (int u = 0; u < NT; ++u) acc[u] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F), u128 = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* b0 = w0 + b * kBlock;
    const uint8_t* b1 = w1 + b * kBlock;
    prefetch_pair_ahead<kBlock, kStream>(b0, b1, b * kBlock, nb * kBlock);
    __m512i q[8];
    if constexpr (kKind != 1) {
      for (int k = 0; k < 4; ++k) {
        const __m512i v = load_pair(b0 + kLevels + 32 * k, b1 + kLevels + 32 * k);
        q[k] = _mm512_and_si512(v, low4);
        q[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      }
    } else {
      for (int k = 0; k < 8; ++k) q[k] = _mm512_xor_si512(load_pair(b0 + 16 + 32 * k, b1 + 16 + 32 * k), u128);
    }
    const __m512 dw = scales_pair(b0, b1);
    // Unrolled so that acc[] stays in registers (a loop kept them in memory), and each token's
    // block sum in two chains of four multiply-adds (integer sums: exact in any order).
#pragma GCC unroll 8
    for (int u = 0; u < NT; ++u) {
      const uint8_t* qa = a + u * a_stride + b * kActBlock + kActLevels;
      __m512i isum[2] = {kKind != 2 ? _mm512_set1_epi32(bias[u * stat_stride + b]) : _mm512_setzero_si512(),
                         _mm512_setzero_si512()};
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        int32_t v;
        std::memcpy(&v, qa + 4 * k, 4);
        isum[k & 1] = _mm512_dpbusd_epi32(isum[k & 1], q[k], _mm512_set1_epi32(v));
      }
      acc[u] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(da[u * stat_stride + b])),
                               _mm512_cvtepi32_ps(_mm512_add_epi32(isum[0], isum[1])), acc[u]);
    }
  }
  if constexpr (kKind == 2) {
    // Q4_1's min terms: their own chain per lane in block order, in a second pass over the block
    // headers (in cache) so that the first keeps its registers for the tokens.
    __m512 accm[NT];
    for (int u = 0; u < NT; ++u) accm[u] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const __m512 mw = scales_pair(w0 + b * kBlock + 16, w1 + b * kBlock + 16);
      for (int u = 0; u < NT; ++u) accm[u] = _mm512_fmadd_ps(mw, _mm512_set1_ps(sa[u * stat_stride + b]), accm[u]);
    }
    for (int u = 0; u < NT; ++u) acc[u] = _mm512_add_ps(acc[u], accm[u]);
  }
  for (int u = 0; u < NT; ++u) _mm512_storeu_ps(y + u * y_stride, acc[u]);
}

// The 512-bit grouped GEMMs' outer loop: groups in pairs, tokens in tiles of up to eight (each tile
// unpacks the pair's weight blocks once); tile.template operator()<NT, kStream>(g, t) runs groups
// g, g + 1 against tokens t..t + NT - 1, odd(g) an odd last group through the 256-bit kernel.
// kStream (see prefetch_pair_ahead): the pair's first tile, and any tile under eight tokens (a
// prefill's last, which would gain nothing from a second full-size instantiation).
template <class Tile, class Odd>
void pair_tiles(int64_t n_groups, int64_t n_tok, Tile&& tile, Odd&& odd) {
  int64_t g = 0;
  for (; g + 2 <= n_groups; g += 2)
    token_tiles<8>(n_tok, [&]<int NT>(int64_t t) {
      if constexpr (NT < 8) tile.template operator()<NT, true>(g, t);
      else if (t == 0) tile.template operator()<NT, true>(g, t);
      else tile.template operator()<NT, false>(g, t);
    });
  if (g < n_groups) odd(g);
}

template <int kKind>
void gemm_x8_zmm(const void* vw, size_t group_bytes, int64_t n_groups, const void* va, size_t a_stride, int64_t n_tok,
                 int64_t n, float* y, size_t y_stride) {
  const int64_t nb = n / 32;
  const auto* a = static_cast<const uint8_t*>(va);
  // Per block and token: the activation scale, and Q4_0's bias or Q4_1's activation sum.
  const float* da = nullptr;
  const int32_t* bias = nullptr;
  const float* sa = nullptr;
  if constexpr (kKind == 2) {
    const Q8_1Tables tab = q8_1_tables(a, a_stride, n_tok, nb);
    da = tab.da, sa = tab.sa;
  } else {
    const Q8_0Tables tab = q8_0_tables(a, a_stride, n_tok, nb, kKind == 0 ? -8 : -128);
    da = tab.da, bias = tab.bias;
  }
  const auto* w = static_cast<const uint8_t*>(vw);
  auto stat = [&](const auto* p, int64_t t) { return p ? p + t * nb : p; };
  pair_tiles(
      n_groups, n_tok,
      [&]<int NT, bool kStream>(int64_t g, int64_t t) {
        x8_pair_tile<kKind, NT, kStream>(w + g * group_bytes, w + (g + 1) * group_bytes, nb, a + t * a_stride, a_stride,
                                da + t * nb, stat(bias, t), stat(sa, t), nb, y + t * y_stride + 8 * g, y_stride);
      },
      [&](int64_t g) {
        const uint8_t* wg = w + g * group_bytes;
        if constexpr (kKind == 0) gemm_q4_x8_x86<2>(wg, group_bytes, 1, va, a_stride, n_tok, n, y + 8 * g, y_stride);
        else if constexpr (kKind == 1) gemm_q8_0_x8_x86(wg, group_bytes, 1, va, a_stride, n_tok, n, y + 8 * g, y_stride);
        else gemm_q4_x8_x86<4>(wg, group_bytes, 1, va, a_stride, n_tok, n, y + 8 * g, y_stride);
      });
}

template <int kKind>
void gemv_x8_zmm(const void* w, size_t group_bytes, int64_t n_groups, const void* a, int64_t n, float* out) {
  gemm_x8_zmm<kKind>(w, group_bytes, n_groups, a, 0, 1, n, out, 0);
}

// The grouped kernels' vector operations on pairs of groups (see Ops256 in kernels_x86.inc).
struct Ops512 {
  static __m512i set1(int8_t v) { return _mm512_set1_epi8(v); }
  static __m512i slli(__m512i v, int n) { return _mm512_slli_epi16(v, n); }
  static __m512i srli(__m512i v, int n) { return _mm512_srli_epi16(v, n); }
  static __m512i and_(__m512i a, __m512i b) { return _mm512_and_si512(a, b); }
  static __m512i or_(__m512i a, __m512i b) { return _mm512_or_si512(a, b); }
};

// Q4_K (Q5_K: kFifth) groups g, g + 1 against NT tokens (up to eight), as qk_x8_tile per lane.
template <bool kFifth, int NT, bool kStream>
void qk_pair_tile(const uint8_t* w0, const uint8_t* w1, int64_t nsb, const uint8_t* a, size_t a_stride,
                  const float* da, const int32_t* bpair, int64_t stat_stride, float* y, size_t y_stride) {
  constexpr int64_t kBlock = kFifth ? kQ5_Kx8Block : kQ4_Kx8Block, kUnit = kFifth ? 160 : 128;
  __m512 acc[NT], accm[NT];
  for (int u = 0; u < NT; ++u) acc[u] = _mm512_setzero_ps(), accm[u] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nsb; ++b) {
    const uint8_t* b0 = w0 + b * kBlock;
    const uint8_t* b1 = w1 + b * kBlock;
    QKx8Scales s0, s1;
    qk_x8_scales(b0 + 32, s0);
    qk_x8_scales(b1 + 32, s1);
    __m512i isum[NT];
    for (int u = 0; u < NT; ++u) isum[u] = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      // An eighth of the super-block's prefetches per sub-block: all at once, they filled the
      // core's line fill buffers and stalled the loads of the sub-blocks in between. (These two
      // lines, repeated in the other K-quant pair tiles, went through a helper template once,
      // and decode fell from 45-47 to 36-37 tok/s on the 1.1B Q4_K: GCC 12 had deleted the
      // prefetches, see prefetch_ahead.)
      constexpr int64_t kSlice = kBlock / 8;
      prefetch_pair_ahead<kSlice, kStream>(b0 + kSlice * j, b1 + kSlice * j, b * kBlock + kSlice * j, nsb * kBlock);
      const uint8_t* u0 = b0 + kQKx8Units + kUnit * j;
      const uint8_t* u1 = b1 + kQKx8Units + kUnit * j;
      __m512i q[8];
      qk_x8_unit<kFifth, __m512i, Ops512>([u0, u1](int o) { return load_pair(u0 + o, u1 + o); }, q);
      int64_t sc0, sc1;
      std::memcpy(&sc0, s0.sc + 8 * j, 8);
      std::memcpy(&sc1, s1.sc + 8 * j, 8);
      const __m512i sc = _mm512_cvtepu8_epi32(_mm_set_epi64x(sc1, sc0));
      // Unrolled, with two chains per sub-block dot, as in x8_pair_tile.
#pragma GCC unroll 8
      for (int u = 0; u < NT; ++u) {
        const uint8_t* qa = a + u * a_stride + b * 292 + 4 + 32 * j;
        __m512i dot[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          int32_t v;
          std::memcpy(&v, qa + 4 * k, 4);
          dot[k & 1] = _mm512_dpbusd_epi32(dot[k & 1], q[k], _mm512_set1_epi32(v));
        }
        isum[u] = _mm512_add_epi32(isum[u], _mm512_mullo_epi32(_mm512_add_epi32(dot[0], dot[1]), sc));
      }
    }
    // The mins' term of each row, sum over sub-blocks of min * activation sub-block sum, in int32 on
    // int16 pairs: lane r holds (m[2i][r], m[2i + 1][r]) against the token's pair of sums. Every
    // product and sum is an integer below 2^24, so this is the value the other kernels form in f32.
    __m512i mpair[4];
    for (int i = 0; i < 4; ++i)
      mpair[i] = _mm512_cvtepu8_epi16(_mm256_set_m128i(row_pairs_bytes(s1.m, i), row_pairs_bytes(s0.m, i)));
    const __m512 dw = scales_pair(b0, b1), dmin = scales_pair(b0 + 16, b1 + 16);
#pragma GCC unroll 8
    for (int u = 0; u < NT; ++u) {
      const int32_t* bp = bpair + (u * stat_stride + b) * 4;
      __m512i ms = _mm512_setzero_si512();
      for (int i = 0; i < 4; ++i) ms = _mm512_dpwssd_epi32(ms, mpair[i], _mm512_set1_epi32(bp[i]));
      const __m512 vda = _mm512_set1_ps(da[u * stat_stride + b]);
      acc[u] = _mm512_fmadd_ps(_mm512_mul_ps(dw, vda), _mm512_cvtepi32_ps(isum[u]), acc[u]);
      accm[u] = _mm512_fmadd_ps(_mm512_mul_ps(dmin, vda), _mm512_cvtepi32_ps(ms), accm[u]);
    }
  }
  for (int u = 0; u < NT; ++u) _mm512_storeu_ps(y + u * y_stride, _mm512_sub_ps(acc[u], accm[u]));
}

template <bool kFifth>
void gemm_qk_x8_zmm(const void* vw, size_t group_bytes, int64_t n_groups, const void* va, size_t a_stride,
                    int64_t n_tok, int64_t n, float* y, size_t y_stride) {
  const int64_t nsb = n / 256;
  const auto* a = static_cast<const uint8_t*>(va);
  const Q8_KTables tab = q8_k_tables(a, a_stride, n_tok, nsb, Q8KSums::kPairs);
  const auto* w = static_cast<const uint8_t*>(vw);
  pair_tiles(
      n_groups, n_tok,
      [&]<int NT, bool kStream>(int64_t g, int64_t t) {
        qk_pair_tile<kFifth, NT, kStream>(w + g * group_bytes, w + (g + 1) * group_bytes, nsb, a + t * a_stride, a_stride,
                                 tab.da + t * nsb, tab.bpair + t * nsb * 4, nsb, y + t * y_stride + 8 * g, y_stride);
      },
      [&](int64_t g) {
        gemm_qk_x8_x86<kFifth>(w + g * group_bytes, group_bytes, 1, va, a_stride, n_tok, n, y + 8 * g, y_stride);
      });
}

template <bool kFifth>
void gemv_qk_x8_zmm(const void* w, size_t group_bytes, int64_t n_groups, const void* a, int64_t n, float* out) {
  gemm_qk_x8_zmm<kFifth>(w, group_bytes, n_groups, a, 0, 1, n, out, 0);
}

// Q2_K groups g, g + 1 against NT tokens (up to eight), as q2_k_x8_tile per lane.
template <int NT, bool kStream>
void q2_k_pair_tile(const uint8_t* w0, const uint8_t* w1, int64_t nsb, const uint8_t* a, size_t a_stride,
                    const float* da, int64_t stat_stride, float* y, size_t y_stride) {
  __m512 acc[NT], accm[NT];
  for (int u = 0; u < NT; ++u) acc[u] = _mm512_setzero_ps(), accm[u] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi32(0x0F);
  for (int64_t b = 0; b < nsb; ++b) {
    const uint8_t* b0 = w0 + b * kQ2_Kx8Block;
    const uint8_t* b1 = w1 + b * kQ2_Kx8Block;
    __m512i isum[NT];
    for (int u = 0; u < NT; ++u) isum[u] = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      constexpr int64_t kSlice = kQ2_Kx8Block / 8;  // as in qk_pair_tile
      prefetch_pair_ahead<kSlice, kStream>(b0 + kSlice * j, b1 + kSlice * j, b * kQ2_Kx8Block + kSlice * j, nsb * kQ2_Kx8Block);
      const uint8_t* u0 = b0 + 160 + 64 * j;
      const uint8_t* u1 = b1 + 160 + 64 * j;
      __m512i q[8];
      low2_unit<__m512i, Ops512>([u0, u1](int o) { return load_pair(u0 + o, u1 + o); }, q);
      __m512i sc[2];
      for (int h = 0; h < 2; ++h) {
        int64_t s0, s1;
        std::memcpy(&s0, b0 + 32 + 8 * (2 * j + h), 8);
        std::memcpy(&s1, b1 + 32 + 8 * (2 * j + h), 8);
        sc[h] = _mm512_and_si512(_mm512_cvtepu8_epi32(_mm_set_epi64x(s1, s0)), low4);
      }
#pragma GCC unroll 8
      for (int u = 0; u < NT; ++u) {
        const uint8_t* qa = a + u * a_stride + b * 292 + 4 + 32 * j;
        __m512i dot[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          int32_t v;
          std::memcpy(&v, qa + 4 * k, 4);
          dot[k / 4] = _mm512_dpbusd_epi32(dot[k / 4], q[k], _mm512_set1_epi32(v));
        }
        isum[u] = _mm512_add_epi32(isum[u], _mm512_add_epi32(_mm512_mullo_epi32(dot[0], sc[0]), _mm512_mullo_epi32(dot[1], sc[1])));
      }
    }
    __m512i mpair[8];
    for (int i = 0; i < 8; ++i)
      mpair[i] = _mm512_srli_epi16(
          _mm512_cvtepu8_epi16(_mm256_set_m128i(row_pairs_bytes(b1 + 32, i), row_pairs_bytes(b0 + 32, i))), 4);
    const __m512 dw = scales_pair(b0, b1), dmin = scales_pair(b0 + 16, b1 + 16);
#pragma GCC unroll 8
    for (int u = 0; u < NT; ++u) {
      const uint8_t* bs = a + u * a_stride + b * 292 + 260;
      __m512i ms = _mm512_setzero_si512();
      for (int i = 0; i < 8; ++i) {
        int32_t pair;
        std::memcpy(&pair, bs + 4 * i, 4);
        ms = _mm512_dpwssd_epi32(ms, mpair[i], _mm512_set1_epi32(pair));
      }
      const __m512 vda = _mm512_set1_ps(da[u * stat_stride + b]);
      acc[u] = _mm512_fmadd_ps(_mm512_mul_ps(dw, vda), _mm512_cvtepi32_ps(isum[u]), acc[u]);
      accm[u] = _mm512_fmadd_ps(_mm512_mul_ps(dmin, vda), _mm512_cvtepi32_ps(ms), accm[u]);
    }
  }
  for (int u = 0; u < NT; ++u) _mm512_storeu_ps(y + u * y_stride, _mm512_sub_ps(acc[u], accm[u]));
}

void gemm_q2_k_x8_zmm(const void* vw, size_t group_bytes, int64_t n_groups, const void* va, size_t a_stride,
                      int64_t n_tok, int64_t n, float* y, size_t y_stride) {
  const int64_t nsb = n / 256;
  const auto* a = static_cast<const uint8_t*>(va);
  const Q8_KTables tab = q8_k_tables(a, a_stride, n_tok, nsb, Q8KSums::kScaleOnly);
  const auto* w = static_cast<const uint8_t*>(vw);
  pair_tiles(
      n_groups, n_tok,
      [&]<int NT, bool kStream>(int64_t g, int64_t t) {
        q2_k_pair_tile<NT, kStream>(w + g * group_bytes, w + (g + 1) * group_bytes, nsb, a + t * a_stride, a_stride,
                           tab.da + t * nsb, nsb, y + t * y_stride + 8 * g, y_stride);
      },
      [&](int64_t g) { gemm_q2_k_x8_x86(w + g * group_bytes, group_bytes, 1, va, a_stride, n_tok, n, y + 8 * g, y_stride); });
}

void gemv_q2_k_x8_zmm(const void* w, size_t group_bytes, int64_t n_groups, const void* a, int64_t n, float* out) {
  gemm_q2_k_x8_zmm(w, group_bytes, n_groups, a, 0, 1, n, out, 0);
}

// Q6_K or Q3_K groups g, g + 1 against NT tokens (up to eight: 8 chunk, 8 sum and 8 accumulator
// registers of the 32), as offset_k_x8_tile per lane.
template <class P, int NT, bool kStream>
void offset_k_pair_tile(const uint8_t* w0, const uint8_t* w1, int64_t nsb, const uint8_t* a, size_t a_stride,
                   const float* da, const int32_t* off, int64_t stat_stride, float* y, size_t y_stride) {
  __m512 acc[NT];
  for (int u = 0; u < NT; ++u) acc[u] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nsb; ++b) {
    const uint8_t* b0 = w0 + b * P::kBlock;
    const uint8_t* b1 = w1 + b * P::kBlock;
    __m512i isum[NT];
    for (int u = 0; u < NT; ++u) isum[u] = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      constexpr int64_t kSlice = P::kBlock / 8;  // as in qk_pair_tile
      prefetch_pair_ahead<kSlice, kStream>(b0 + kSlice * j, b1 + kSlice * j, b * P::kBlock + kSlice * j, nsb * P::kBlock);
      const uint8_t* u0 = b0 + 144 + P::kUnit * j;
      const uint8_t* u1 = b1 + 144 + P::kUnit * j;
      __m512i q[8];
      P::template unit<__m512i, Ops512>([u0, u1](int o) { return load_pair(u0 + o, u1 + o); }, q);
      __m512i sc[2];
      for (int h = 0; h < 2; ++h) {
        int64_t s0, s1;
        std::memcpy(&s0, b0 + 16 + 8 * (2 * j + h), 8);
        std::memcpy(&s1, b1 + 16 + 8 * (2 * j + h), 8);
        sc[h] = _mm512_cvtepi8_epi32(_mm_set_epi64x(s1, s0));
      }
      // Unrolled so that isum[] stays in registers; each sub-block's dot is its own chain of four.
#pragma GCC unroll 8
      for (int u = 0; u < NT; ++u) {
        const uint8_t* qa = a + u * a_stride + b * 292 + 4 + 32 * j;
        const int32_t* o = off + (u * stat_stride + b) * 16 + 2 * j;
        __m512i dot[2] = {_mm512_set1_epi32(o[0]), _mm512_set1_epi32(o[1])};
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          int32_t v;
          std::memcpy(&v, qa + 4 * k, 4);
          dot[k / 4] = _mm512_dpbusd_epi32(dot[k / 4], q[k], _mm512_set1_epi32(v));
        }
        isum[u] = _mm512_add_epi32(isum[u], _mm512_add_epi32(_mm512_mullo_epi32(dot[0], sc[0]), _mm512_mullo_epi32(dot[1], sc[1])));
      }
    }
    const __m512 dw = scales_pair(b0, b1);
#pragma GCC unroll 8
    for (int u = 0; u < NT; ++u)
      acc[u] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(da[u * stat_stride + b])), _mm512_cvtepi32_ps(isum[u]), acc[u]);
  }
  for (int u = 0; u < NT; ++u) _mm512_storeu_ps(y + u * y_stride, acc[u]);
}

template <class P>
void gemm_offset_k_x8_zmm(const void* vw, size_t group_bytes, int64_t n_groups, const void* va, size_t a_stride,
                          int64_t n_tok, int64_t n, float* y, size_t y_stride) {
  const int64_t nsb = n / 256;
  const auto* a = static_cast<const uint8_t*>(va);
  const Q8_KTables tab = q8_k_tables(a, a_stride, n_tok, nsb, Q8KSums::kOffsets, P::kOffset);
  const auto* w = static_cast<const uint8_t*>(vw);
  pair_tiles(
      n_groups, n_tok,
      [&]<int NT, bool kStream>(int64_t g, int64_t t) {
        offset_k_pair_tile<P, NT, kStream>(w + g * group_bytes, w + (g + 1) * group_bytes, nsb, a + t * a_stride, a_stride,
                                  tab.da + t * nsb, tab.off + t * nsb * 16, nsb, y + t * y_stride + 8 * g, y_stride);
      },
      [&](int64_t g) {
        gemm_offset_k_x8_x86<P>(w + g * group_bytes, group_bytes, 1, va, a_stride, n_tok, n, y + 8 * g, y_stride);
      });
}

template <class P>
void gemv_offset_k_x8_zmm(const void* w, size_t group_bytes, int64_t n_groups, const void* a, int64_t n, float* out) {
  gemm_offset_k_x8_zmm<P>(w, group_bytes, n_groups, a, 0, 1, n, out, 0);
}

// --- Attention primitives at 512 bits (same bits as the 256-bit ones: the scores' double sums are
// exact in any order, and each accumulator element sees the same FMAs in the same order) ----------
// Lane u of the result: the sum of v[u]'s eight lanes (three rounds of shuffles and adds for all
// eight, where a reduction per vector would take three each).
inline __m512d sum8(const __m512d v[8]) {
  __m512d s[4];
  for (int j = 0; j < 4; ++j)
    s[j] = _mm512_add_pd(_mm512_unpacklo_pd(v[2 * j], v[2 * j + 1]), _mm512_unpackhi_pd(v[2 * j], v[2 * j + 1]));
  // s[j]'s 128-bit lane l: (v[2j], v[2j+1]) partial sums over elements 2l, 2l + 1.
  const __m512d a = _mm512_add_pd(_mm512_shuffle_f64x2(s[0], s[1], 0x88), _mm512_shuffle_f64x2(s[0], s[1], 0xDD));
  const __m512d b = _mm512_add_pd(_mm512_shuffle_f64x2(s[2], s[3], 0x88), _mm512_shuffle_f64x2(s[2], s[3], 0xDD));
  // a's lanes: (v0, v1) halves 0 and 1, then (v2, v3) halves 0 and 1; b's the same for v4..v7.
  return _mm512_add_pd(_mm512_shuffle_f64x2(a, b, 0x88), _mm512_shuffle_f64x2(a, b, 0xDD));
}

// Eight positions at a time, two query rows against them, the eight sums reduced together. The
// eight key rows are widened to double once per block of positions, for all the query rows (a GQA
// group's eight): widening them per pair of rows took as many uops as the multiply-adds. The sums
// are exact (see ScoresFn), so the order is free.
template <DType W>
void scores_rows_zmm(const double* q, int64_t n_rows, const void* const* k, int64_t n_pos, int64_t d, float scale,
                     float* out, int64_t ld) {
  constexpr int64_t kMaxD = 256;
  if (d % 8 != 0 || d > kMaxD) return scores_rows_x86<W>(q, n_rows, k, n_pos, d, scale, out, ld);
  const __m512 vs = _mm512_set1_ps(scale);
  alignas(64) double kd[8 * kMaxD];
  int64_t p = 0;
  for (; p + 8 <= n_pos; p += 8) {
    for (int u = 0; u < 8; ++u)
      for (int64_t c = 0; c < d; c += 8) _mm512_store_pd(kd + u * d + c, _mm512_cvtps_pd(load8_plain<W>(k[p + u], c)));
    int64_t i = 0;
    for (; i + 2 <= n_rows; i += 2) {
      __m512d acc0[8], acc1[8];
      for (int u = 0; u < 8; ++u) acc0[u] = _mm512_setzero_pd(), acc1[u] = _mm512_setzero_pd();
      for (int64_t c = 0; c < d; c += 8) {
        const __m512d q0 = _mm512_loadu_pd(q + i * d + c), q1 = _mm512_loadu_pd(q + (i + 1) * d + c);
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u) {
          const __m512d kv = _mm512_load_pd(kd + u * d + c);
          acc0[u] = _mm512_fmadd_pd(q0, kv, acc0[u]);
          acc1[u] = _mm512_fmadd_pd(q1, kv, acc1[u]);
        }
      }
      _mm256_storeu_ps(out + i * ld + p, _mm256_mul_ps(_mm512_cvtpd_ps(sum8(acc0)), _mm512_castps512_ps256(vs)));
      _mm256_storeu_ps(out + (i + 1) * ld + p, _mm256_mul_ps(_mm512_cvtpd_ps(sum8(acc1)), _mm512_castps512_ps256(vs)));
    }
    for (; i < n_rows; ++i) {
      __m512d acc[8];
      for (int u = 0; u < 8; ++u) acc[u] = _mm512_setzero_pd();
      for (int64_t c = 0; c < d; c += 8) {
        const __m512d q0 = _mm512_loadu_pd(q + i * d + c);
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u) acc[u] = _mm512_fmadd_pd(q0, _mm512_load_pd(kd + u * d + c), acc[u]);
      }
      _mm256_storeu_ps(out + i * ld + p, _mm256_mul_ps(_mm512_cvtpd_ps(sum8(acc)), _mm512_castps512_ps256(vs)));
    }
  }
  for (; p < n_pos; ++p) {  // the last positions one at a time
    for (int64_t i = 0; i < n_rows; ++i) {
      __m512d acc = _mm512_setzero_pd();
      for (int64_t c = 0; c < d; c += 8)
        acc = _mm512_fmadd_pd(_mm512_loadu_pd(q + i * d + c), _mm512_cvtps_pd(load8_plain<W>(k[p], c)), acc);
      out[i * ld + p] = static_cast<float>(_mm512_reduce_add_pd(acc)) * scale;
    }
  }
}
void scores_zmm(const double* q, int64_t n_rows, KvRows k, int64_t n_pos, int64_t d, float scale, float* out,
                int64_t ld) {
  if (k.f16) scores_rows_zmm<DType::F16>(q, n_rows, k.rows, n_pos, d, scale, out, ld);
  else scores_rows_zmm<DType::F32>(q, n_rows, k.rows, n_pos, d, scale, out, ld);
}

// Sixteen elements of an F32 or F16 row (the attention kernels' KvRows), as load8_plain's eight.
template <DType W>
inline __m512 load16_plain(const void* p, int64_t i) {
  static_assert(W == DType::F32 || W == DType::F16);
  if constexpr (W == DType::F16)
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)));
  else return _mm512_loadu_ps(static_cast<const float*>(p) + i);
}

// R rows at once over d = 16 NV: each position's value row is loaded once for the R rows, and the
// R NV accumulator chains hide the multiply-add latency that one row's NV chains left exposed
// (positions in order per element, one FMA each, a zero weight skipped: the same bits).
template <DType W, int NV, int R>
void weighted_rows_zmm(const float* w, int64_t ld, const void* const* v, int64_t n_pos, float* acc) {
  constexpr int64_t d = 16 * NV;
  __m512 r[R][NV];
  for (int i = 0; i < R; ++i)
    for (int u = 0; u < NV; ++u) r[i][u] = _mm512_loadu_ps(acc + i * d + 16 * u);
  for (int64_t p = 0; p < n_pos; ++p) {
    __m512 vv[NV];
    for (int u = 0; u < NV; ++u) vv[u] = load16_plain<W>(v[p], 16 * u);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const float wi = w[i * ld + p];
      if (wi == 0.0f) continue;
      const __m512 wp = _mm512_set1_ps(wi);
      for (int u = 0; u < NV; ++u) r[i][u] = _mm512_fmadd_ps(wp, vv[u], r[i][u]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int u = 0; u < NV; ++u) _mm512_storeu_ps(acc + i * d + 16 * u, r[i][u]);
}

template <DType W, int NV, int R>
void weighted_values_rows(const float* w, int64_t n_rows, int64_t ld, const void* const* v, int64_t n_pos, float* acc) {
  constexpr int64_t d = 16 * NV;
  int64_t i = 0;
  for (; i + R <= n_rows; i += R) weighted_rows_zmm<W, NV, R>(w + i * ld, ld, v, n_pos, acc + i * d);
  for (; i < n_rows; ++i) weighted_rows_zmm<W, NV, 1>(w + i * ld, ld, v, n_pos, acc + i * d);
}

// Head sizes 64 and 128 as above; others through the 256-bit kernel.
template <DType W>
void weighted_values_any(const float* w, int64_t n_rows, int64_t ld, const void* const* v, int64_t n_pos, int64_t d,
                         float* acc) {
  if (d == 64) return weighted_values_rows<W, 4, 4>(w, n_rows, ld, v, n_pos, acc);
  if (d == 128) return weighted_values_rows<W, 8, 2>(w, n_rows, ld, v, n_pos, acc);
  weighted_rows_x86<W>(w, n_rows, ld, v, n_pos, d, acc);
}
void weighted_values_zmm(const float* w, int64_t n_rows, int64_t ld, KvRows v, int64_t n_pos, int64_t d, float* acc) {
  if (v.f16) weighted_values_any<DType::F16>(w, n_rows, ld, v.rows, n_pos, d, acc);
  else weighted_values_any<DType::F32>(w, n_rows, ld, v.rows, n_pos, d, acc);
}

// The plain matmuls' 512-bit shape (see PlainYmm): rows 2p and 2p + 1 of a tile side by side in
// lanes 0..7 and 8..15, each against the token's eight activations broadcast to both halves.
struct PlainZmm {
  using R = __m512;
  static constexpr int kRows = 2, kRegs = 32, kMaxTokens = 8, kPanelTokens = 6, kFloats = 16;
  template <DType W>
  static R load(const uint8_t* const* rows, int64_t i) {
    if constexpr (W == DType::F32) {
      const auto* r0 = reinterpret_cast<const float*>(rows[0]);
      const auto* r1 = reinterpret_cast<const float*>(rows[1]);
      return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(r0 + i)), _mm256_loadu_ps(r1 + i), 1);
    } else {
      const __m256i h = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[0] + 2 * i))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[1] + 2 * i)), 1);
      if constexpr (W == DType::F16) return _mm512_cvtph_ps(h);
      else return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }
  static R load_packed(const float* p) { return _mm512_load_ps(p); }
  static void store_packed(float* p, R v) { _mm512_store_ps(p, v); }
  static R bcast(const float* a) { return _mm512_broadcast_f32x8(_mm256_loadu_ps(a)); }
  static R zero() { return _mm512_setzero_ps(); }
  static R fma(R w, R a, R acc) { return _mm512_fmadd_ps(w, a, acc); }
  // hsum's tree in both halves at once: lanes k and k + 4, then k and k + 2, then k and k + 1
  // (each sum is the same pair's, so the same bits), leaving the rows' sums in lanes 0 and 8.
  static void sums(R acc, float* s) {
    acc = _mm512_add_ps(acc, _mm512_shuffle_f32x4(acc, acc, _MM_SHUFFLE(2, 3, 0, 1)));
    acc = _mm512_add_ps(acc, _mm512_permute_ps(acc, _MM_SHUFFLE(1, 0, 3, 2)));
    acc = _mm512_add_ps(acc, _mm512_permute_ps(acc, _MM_SHUFFLE(2, 3, 0, 1)));
    s[0] = _mm512_cvtss_f32(acc);
    s[1] = _mm_cvtss_f32(_mm512_extractf32x4_ps(acc, 2));
  }
};

template <DType W>
void set_panel(Kernels& k, GemmPanelFn panel, GemmPrepareFn prepare, int prep_per_block) {
  k.gemm_panel[static_cast<size_t>(W)] = panel;
  k.gemm_prepare[static_cast<size_t>(W)] = prepare;
  k.gemm_prep_per_block[static_cast<size_t>(W)] = prep_per_block;
}

void add_gemm_panels(Kernels& k) {
  set_panel<DType::Q4_0>(k, gemm_panel<DType::Q4_0>, gemm_prepare<DType::Q4_0>, 1);
  set_panel<DType::Q4_1>(k, gemm_panel<DType::Q4_1>, gemm_prepare<DType::Q4_1>, 2);
  set_panel<DType::Q8_0>(k, gemm_panel<DType::Q8_0>, gemm_prepare<DType::Q8_0>, 1);
  set_panel<DType::Q5_0>(k, gemm_panel<DType::Q5_0>, gemm_prepare<DType::Q5_0>, 1);
  set_panel<DType::Q5_1>(k, gemm_panel<DType::Q5_1>, gemm_prepare<DType::Q5_1>, 2);
}

}  // namespace
}  // namespace avx512

Kernels make_avx512_kernels() {
  Kernels k = avx512::x86_table();
  avx512::add_gemm_panels(k);
  k.gemm_q4_0_x8 = avx512::gemm_x8_zmm<0>;
  k.gemm_q8_0_x8 = avx512::gemm_x8_zmm<1>;
  k.gemm_q4_1_x8 = avx512::gemm_x8_zmm<2>;
  // Decode on the same pair tiles (one token): half the instructions of the 256-bit kernels
  // per weight byte, the same bits.
  k.gemv_q4_0_x8 = avx512::gemv_x8_zmm<0>;
  k.gemv_q8_0_x8 = avx512::gemv_x8_zmm<1>;
  k.gemv_q4_1_x8 = avx512::gemv_x8_zmm<2>;
  k.gemv_q4_k_x8 = avx512::gemv_qk_x8_zmm<false>;
  k.gemm_q4_k_x8 = avx512::gemm_qk_x8_zmm<false>;
  k.gemv_q5_k_x8 = avx512::gemv_qk_x8_zmm<true>;
  k.gemm_q5_k_x8 = avx512::gemm_qk_x8_zmm<true>;
  k.gemv_q6_k_x8 = avx512::gemv_offset_k_x8_zmm<avx512::Q6x8>;
  k.gemm_q6_k_x8 = avx512::gemm_offset_k_x8_zmm<avx512::Q6x8>;
  k.gemv_q2_k_x8 = avx512::gemv_q2_k_x8_zmm;
  k.gemm_q2_k_x8 = avx512::gemm_q2_k_x8_zmm;
  k.gemv_q3_k_x8 = avx512::gemv_offset_k_x8_zmm<avx512::Q3x8>;
  k.gemm_q3_k_x8 = avx512::gemm_offset_k_x8_zmm<avx512::Q3x8>;
  k.gemm_rows[static_cast<size_t>(DType::F32)] = avx512::plain_gemm<avx512::PlainZmm, DType::F32>;
  k.gemm_rows[static_cast<size_t>(DType::F16)] = avx512::plain_gemm<avx512::PlainZmm, DType::F16>;
  k.gemm_rows[static_cast<size_t>(DType::BF16)] = avx512::plain_gemm<avx512::PlainZmm, DType::BF16>;
  k.scores = avx512::scores_zmm;
  k.weighted_values = avx512::weighted_values_zmm;
  return k;
}

}  // namespace tern::cpu

#else
namespace tern::cpu {
Kernels make_avx512_kernels() { return {}; }
}  // namespace tern::cpu
#endif
