// K-quants (Q2_K..Q6_K, Q8_K): 256-element super-blocks whose 16- or 32-element sub-blocks carry
// small integer scales (and mins) relative to one or two f16 super-block scales.
// Decoding is ggml's dequantize_row_*_K arithmetic, operation for operation, so results are
// bit-identical. (Every product there is an f16 scale times small integers, exact in f32, so FMA
// contraction under -march=native cannot change a result either; checked with the parity test.)
// Encoding follows ggml's *_ref scheme (scale search per sub-block, then requantise
// against the rounded stored scales); its bytes need not equal llama.cpp's.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/codec.h"
#include "quant/k_scales.h"
#include "quant/scale_search.h"

namespace tern::quant {
namespace {

// --- shared packing -------------------------------------------------------------------------------

// Q2_K/Q3_K/Q6_K interleave: within each 128-element half, element 32*j + l lives in byte l (of that
// half's 32-byte slice) at bit offset 2*j.
struct Crumb {
  int byte, shift;
};
inline Crumb crumb_of(int e) {
  const int half = e / 128, r = e % 128;
  return {half * 32 + r % 32, 2 * (r / 32)};
}

// Q4_K/Q5_K: within each 64-element chunk, element l and l+32 share byte l as low/high nibble.
inline Crumb nibble_of(int e) {
  const int chunk = e / 64, r = e % 64;
  return {chunk * 32 + r % 32, 4 * (r / 32)};
}

// Weights for a sub-block's scale search. With an importance matrix: ggml's qw * sqrt(sigma2 + x^2);
// without: ggml's default for the affine K-quants, the sub-block's RMS plus |x|.
void subblock_weights(const float* x, const float* importance, int n, float sigma2, float* w) {
  if (importance) {
    for (int i = 0; i < n; ++i) w[i] = importance[i] * std::sqrt(sigma2 + x[i] * x[i]);
    return;
  }
  float sum_x2 = 0;
  for (int i = 0; i < n; ++i) sum_x2 += x[i] * x[i];
  const float av_x = std::sqrt(sum_x2 / n);
  for (int i = 0; i < n; ++i) w[i] = av_x + std::fabs(x[i]);
}

float superblock_sigma2(const float* x) {
  float s = 0;
  for (int i = 0; i < kQK_K; ++i) s += x[i] * x[i];
  return 2 * s / kQK_K;
}

// Q3_K and Q6_K: a symmetric scale search (nmax levels each side) for each of the 16 sub-blocks of
// 16, levels into L. Returns the signed scale of largest magnitude (0 for an all-zero block), which
// the caller maps onto its integer scale range.
float search_symmetric_subblock_scales(const float* x, const float* importance, int nmax, int8_t* L,
                                       float* scales) {
  float w[16];
  const float sigma2 = superblock_sigma2(x);
  float max_scale = 0, max_abs_scale = 0;
  for (int j = 0; j < 16; ++j) {
    const float* ws = nullptr;
    if (importance) {
      subblock_weights(x + 16 * j, importance + 16 * j, 16, sigma2, w);
      ws = w;
    }
    scales[j] = make_qx_quants(16, nmax, x + 16 * j, L + 16 * j, 1, ws);
    if (std::fabs(scales[j]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  return max_scale;
}

// --- Q4_K / Q5_K: 8 sub-blocks of 32, 6-bit scale and min each ------------------------------------

template <class B>
struct AffineK {
  static constexpr int kBits = requires(B b) { b.qh; } ? 5 : 4;
  static constexpr int kMaxQ = (1 << kBits) - 1;

  static int level(const B& b, int e) {
    const Crumb c = nibble_of(e);
    int q = (b.qs[c.byte] >> c.shift) & 0xF;
    if constexpr (kBits == 5) q += ((b.qh[e % 32] >> (e / 32)) & 1) ? 16 : 0;
    return q;
  }

  static void decode(const B& b, float* y) {
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    for (int j = 0; j < kQK_K / 32; ++j) {
      int sc, m;
      get_scale_min_k4(j, b.scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      for (int l = 0; l < 32; ++l) y[32 * j + l] = d1 * level(b, 32 * j + l) - m1;
    }
  }

  static void encode(const float* x, const float* importance, B& b) {
    uint8_t L[kQK_K], Laux[32];
    float w[32], scales[8], mins[8];
    const float sigma2 = superblock_sigma2(x);
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      subblock_weights(x + 32 * j, importance ? importance + 32 * j : nullptr, 32, sigma2, w);
      // ggml's search parameters: Q4_K tries 20 steps from -1, Q5_K 15 steps from -0.5.
      scales[j] = kBits == 4
                      ? make_qkx2_quants(32, kMaxQ, x + 32 * j, w, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20, false)
                      : make_qkx2_quants(32, kMaxQ, x + 32 * j, w, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15, false);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
      const int ls = std::min(63, nearest_int(inv_scale * scales[j]));
      const int lm = std::min(63, nearest_int(inv_min * mins[j]));
      set_scale_min_k4(j, ls, lm, b.scales);
    }
    b.d = f32_to_fp16(max_scale / 63.f);
    b.dmin = f32_to_fp16(max_min / 63.f);
    // Requantise against the scales as stored (6-bit, f16), not the searched ones.
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      get_scale_min_k4(j, b.scales, sc, m);
      const float d = fp16_to_f32(b.d) * sc;
      if (d == 0) continue;
      const float dm = fp16_to_f32(b.dmin) * m;
      for (int i = 0; i < 32; ++i)
        L[32 * j + i] = static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + i] + dm) / d), 0, kMaxQ));
    }
    for (int e = 0; e < kQK_K; ++e) {
      const Crumb c = nibble_of(e);
      b.qs[c.byte] |= static_cast<uint8_t>((L[e] & 0xF) << c.shift);
      if constexpr (kBits == 5) b.qh[e % 32] |= static_cast<uint8_t>((L[e] >> 4) << (e / 32));
    }
  }

  // Sub-block j: d * sc_j * level - dmin * m_j.
  static void grids(const B& b, GroupGrid* g) {
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    for (int j = 0; j < kQK_K / 32; ++j) {
      int sc, m;
      get_scale_min_k4(j, b.scales, sc, m);
      g[j] = {d * sc, -dmin * m, 0, kMaxQ};
    }
  }
  static void set_levels(B& b, const int* levels) {
    std::memset(b.qs, 0, sizeof b.qs);
    if constexpr (kBits == 5) std::memset(b.qh, 0, sizeof b.qh);
    for (int e = 0; e < kQK_K; ++e) {
      const Crumb c = nibble_of(e);
      b.qs[c.byte] |= static_cast<uint8_t>((levels[e] & 0xF) << c.shift);
      if constexpr (kBits == 5) b.qh[e % 32] |= static_cast<uint8_t>((levels[e] >> 4) << (e / 32));
    }
  }

  static constexpr RowCodec codec = with_grids<B, kQK_K, 32, AffineK>(make_codec<B, kQK_K, decode, encode>());
};

// --- Q2_K: 16 sub-blocks of 16, 4-bit scale and min, 2-bit levels ---------------------------------

struct Q2K {
  static void decode(const BlockQ2_K& b, float* y) {
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    for (int e = 0; e < kQK_K; ++e) {
      const uint8_t sc = b.scales[e / 16];
      const float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
      const Crumb c = crumb_of(e);
      y[e] = dl * ((b.qs[c.byte] >> c.shift) & 3) - ml;
    }
  }

  static void encode(const float* x, const float* importance, BlockQ2_K& b) {
    uint8_t L[kQK_K], Laux[16];
    float w[16], scales[16], mins[16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
      // ggml weights Q2_K's search by |x| (with mean absolute error): with 4 levels, the large
      // elements matter most.
      for (int l = 0; l < 16; ++l)
        w[l] = std::fabs(x[16 * j + l]) * (importance ? importance[16 * j + l] : 1.f);
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    if (max_scale > 0) {
      const float iscale = 15.f / max_scale;
      for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(std::min(15, nearest_int(iscale * scales[j])));
      b.d = f32_to_fp16(max_scale / 15.f);
    }
    if (max_min > 0) {
      const float iscale = 15.f / max_min;
      for (int j = 0; j < 16; ++j)
        b.scales[j] |= static_cast<uint8_t>(std::min(15, nearest_int(iscale * mins[j])) << 4);
      b.dmin = f32_to_fp16(max_min / 15.f);
    }
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_f32(b.d) * (b.scales[j] & 0xF);
      if (d == 0) continue;
      const float dm = fp16_to_f32(b.dmin) * (b.scales[j] >> 4);
      for (int i = 0; i < 16; ++i)
        L[16 * j + i] = static_cast<uint8_t>(std::clamp(nearest_int((x[16 * j + i] + dm) / d), 0, 3));
    }
    for (int e = 0; e < kQK_K; ++e) {
      const Crumb c = crumb_of(e);
      b.qs[c.byte] |= static_cast<uint8_t>(L[e] << c.shift);
    }
  }

  static constexpr RowCodec codec = make_codec<BlockQ2_K, kQK_K, decode, encode>();
};

// --- Q3_K: 16 sub-blocks of 16, signed 6-bit scales, 3-bit levels (2 low bits + hmask bit) --------

struct Q3K {
  static void decode(const BlockQ3_K& b, float* y) {
    const float d_all = fp16_to_f32(b.d);
    for (int e = 0; e < kQK_K; ++e) {
      const float dl = d_all * (get_scale_q3k(e / 16, b.scales) - 32);
      const Crumb c = crumb_of(e);
      // A clear hmask bit means the level is offset by -4 (ggml's convention).
      const int hbit = (b.hmask[e % 32] >> (e / 32)) & 1;
      y[e] = dl * (((b.qs[c.byte] >> c.shift) & 3) - (hbit ? 0 : 4));
    }
  }

  static void encode(const float* x, const float* importance, BlockQ3_K& b) {
    int8_t L[kQK_K];
    float scales[16];
    const float max_scale = search_symmetric_subblock_scales(x, importance, 4, L, scales);
    if (max_scale != 0) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < 16; ++j) set_scale_q3k(j, std::clamp(nearest_int(iscale * scales[j]), -32, 31) + 32, b.scales);
      b.d = f32_to_fp16(1 / iscale);
    }
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_f32(b.d) * (get_scale_q3k(j, b.scales) - 32);
      if (d == 0) continue;
      for (int i = 0; i < 16; ++i)
        L[16 * j + i] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + i] / d), -4, 3) + 4);
    }
    for (int e = 0; e < kQK_K; ++e) {
      const int l = L[e];
      if (l > 3) b.hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
      const Crumb c = crumb_of(e);
      b.qs[c.byte] |= static_cast<uint8_t>((l & 3) << c.shift);
    }
  }

  // Sub-block j: d * (scale_j - 32) * (level - 4), level 0..7 (bit 2 in hmask, bits 0..1 in qs).
  static void grids(const BlockQ3_K& b, GroupGrid* g) {
    const float d_all = fp16_to_f32(b.d);
    for (int j = 0; j < 16; ++j) {
      const float dl = d_all * (get_scale_q3k(j, b.scales) - 32);
      g[j] = {dl, -4 * dl, 0, 7};
    }
  }
  static void set_levels(BlockQ3_K& b, const int* levels) {
    std::memset(b.hmask, 0, sizeof b.hmask);
    std::memset(b.qs, 0, sizeof b.qs);
    for (int e = 0; e < kQK_K; ++e) {
      const int l = levels[e];
      if (l > 3) b.hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
      const Crumb c = crumb_of(e);
      b.qs[c.byte] |= static_cast<uint8_t>((l & 3) << c.shift);
    }
  }

  static constexpr RowCodec codec = with_grids<BlockQ3_K, kQK_K, 16, Q3K>(make_codec<BlockQ3_K, kQK_K, decode, encode>());
};

// --- Q6_K: 16 sub-blocks of 16, int8 scales, 6-bit levels (4 in ql + 2 in qh) ----------------------

struct Q6K {
  // Element 32*j + l of a 128-element half: low nibble from ql (byte l or l+32, nibble j/2), high two
  // bits from qh byte l at offset 2*j.
  static Crumb low_of(int e) {
    const int half = e / 128, r = e % 128, j = r / 32;
    return {half * 64 + r % 32 + 32 * (j & 1), 4 * (j >> 1)};
  }

  static void decode(const BlockQ6_K& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int e = 0; e < kQK_K; ++e) {
      const Crumb lo = low_of(e), hi = crumb_of(e);
      const int q = (((b.ql[lo.byte] >> lo.shift) & 0xF) | (((b.qh[hi.byte] >> hi.shift) & 3) << 4)) - 32;
      y[e] = d * b.scales[e / 16] * q;
    }
  }

  static void encode(const float* x, const float* importance, BlockQ6_K& b) {
    int8_t L[kQK_K];
    float scales[16];
    const float max_scale = search_symmetric_subblock_scales(x, importance, 32, L, scales);
    if (max_scale == 0) return;  // all-zero block: the zero-initialised block is exact
    const float iscale = -128.f / max_scale;
    b.d = f32_to_fp16(1 / iscale);
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_f32(b.d) * b.scales[j];
      if (d == 0) continue;
      for (int i = 0; i < 16; ++i)
        L[16 * j + i] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + i] / d), -32, 31) + 32);
    }
    for (int e = 0; e < kQK_K; ++e) {
      const Crumb lo = low_of(e), hi = crumb_of(e);
      b.ql[lo.byte] |= static_cast<uint8_t>((L[e] & 0xF) << lo.shift);
      b.qh[hi.byte] |= static_cast<uint8_t>((L[e] >> 4) << hi.shift);
    }
  }

  static constexpr RowCodec codec = make_codec<BlockQ6_K, kQK_K, decode, encode>();
};

// --- Q8_K: f32 scale, int8 levels, group sums (the activation side of K-quant dot products) -------

struct Q8K {
  static void decode(const BlockQ8_K& b, float* y) {
    for (int e = 0; e < kQK_K; ++e) y[e] = b.d * b.qs[e];
  }

  static void encode(const float* x, const float*, BlockQ8_K& b) {
    float max = 0, amax = 0;
    for (int e = 0; e < kQK_K; ++e) {
      if (std::fabs(x[e]) > amax) {
        amax = std::fabs(x[e]);
        max = x[e];
      }
    }
    if (amax == 0) return;
    const float iscale = -127.f / max;
    for (int e = 0; e < kQK_K; ++e) b.qs[e] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[e])));
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += b.qs[16 * g + i];
      b.bsums[g] = static_cast<int16_t>(sum);
    }
    b.d = 1 / iscale;
  }

  static constexpr RowCodec codec = make_codec<BlockQ8_K, kQK_K, decode, encode>();
};

// As weights, the K-quants take Q8_K activations; see dot_decoded for why decoding is exact enough.
template <class K, class B>
constexpr RowCodec k_weight_codec() {
  return with_dot<B, BlockQ8_K, kQK_K, dot_decoded<B, BlockQ8_K, kQK_K, K::decode, Q8K::decode>>(K::codec,
                                                                                                DType::Q8_K);
}

constexpr RowCodec kQ2K = k_weight_codec<Q2K, BlockQ2_K>();
constexpr RowCodec kQ3K = k_weight_codec<Q3K, BlockQ3_K>();
constexpr RowCodec kQ4K = k_weight_codec<AffineK<BlockQ4_K>, BlockQ4_K>();
constexpr RowCodec kQ5K = k_weight_codec<AffineK<BlockQ5_K>, BlockQ5_K>();
constexpr RowCodec kQ6K = k_weight_codec<Q6K, BlockQ6_K>();

}  // namespace

const RowCodec* k_codec(DType t) {
  switch (t) {
    case DType::Q2_K: return &kQ2K;
    case DType::Q3_K: return &kQ3K;
    case DType::Q4_K: return &kQ4K;
    case DType::Q5_K: return &kQ5K;
    case DType::Q6_K: return &kQ6K;
    case DType::Q8_K: return &Q8K::codec;
    default: return nullptr;
  }
}

}  // namespace tern::quant
