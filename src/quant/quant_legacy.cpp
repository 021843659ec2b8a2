// Legacy 32-element block formats: Q4_0, Q5_0 (symmetric), Q4_1, Q5_1 (scale + min), Q8_0, Q8_1.
// Without importance weights, quantisation is ggml's *_ref rounding bit for bit (the same bytes as
// llama.cpp's quantize_row_*_ref and gguf-py); with weights it searches the scale instead.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/codec.h"
#include "quant/scale_search.h"

namespace tern::quant {
namespace {

// Q4_0/Q4_1/Q5_0/Q5_1 differ only in a fifth bit plane (qh) and a stored min (m).
template <class B>
struct Nibble {
  static constexpr bool kAffine = requires(B b) { b.m; };
  static constexpr int kBits = requires(B b) { b.qh; } ? 5 : 4;
  static constexpr int kMaxQ = (1 << kBits) - 1;
  static constexpr int kHalf = 1 << (kBits - 1);  // zero point of the symmetric formats

  // The block's stored levels, 0..kMaxQ, in element order.
  static void levels(const B& b, int* q) {
    uint32_t qh = 0;
    if constexpr (kBits == 5) std::memcpy(&qh, b.qh, 4);
    for (int j = 0; j < kQK / 2; ++j) {  // element j in the low nibble, j+16 in the high one
      for (int h = 0; h < 2; ++h) {
        const int e = j + h * kQK / 2;
        q[e] = ((b.qs[j] >> (4 * h)) & 0xF) | static_cast<int>(((qh >> e) & 1) << 4);
      }
    }
  }

  static void decode(const B& b, float* y) {
    const float d = fp16_to_f32(b.d);
    int q[kQK];
    levels(b, q);
    for (int e = 0; e < kQK; ++e) {
      if constexpr (kAffine)
        y[e] = q[e] * d + fp16_to_f32(b.m);
      else
        y[e] = (q[e] - kHalf) * d;
    }
  }

  // One block against an activation block of its dot type (Q8_1 for the affine formats, Q8_0
  // otherwise), as ggml's vec_dot_q4_0_q8_0 / vec_dot_q4_1_q8_1: an integer sum of level products,
  // then the two f16 scales; the affine min multiplies the activation block's stored (f16) sum.
  using Act = std::conditional_t<kAffine, BlockQ8_1, BlockQ8_0>;
  static float dot(const B& w, const Act& a) {
    int q[kQK];
    levels(w, q);
    int sumi = 0;
    for (int e = 0; e < kQK; ++e) sumi += (kAffine ? q[e] : q[e] - kHalf) * a.qs[e];
    const float dd = fp16_to_f32(w.d) * fp16_to_f32(a.d);
    if constexpr (kAffine)
      return dd * static_cast<float>(sumi) + fp16_to_f32(w.m) * fp16_to_f32(a.s);
    else
      return dd * static_cast<float>(sumi);
  }

  static void pack(const int* q, B& b) {
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      b.qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + kQK / 2] & 0xF) << 4));
      qh |= static_cast<uint32_t>(q[j] >> 4) << j;
      qh |= static_cast<uint32_t>(q[j + kQK / 2] >> 4) << (j + kQK / 2);
    }
    if constexpr (kBits == 5) std::memcpy(b.qh, &qh, 4);
  }

  static void encode(const float* x, const float* importance, B& b) {
    int q[kQK];
    if (importance) {
      encode_weighted(x, importance, q, b);
    } else if constexpr (kAffine) {
      // ggml quantize_row_q4_1_ref: the block's range [min, max] onto 0..kMaxQ.
      float min = x[0], max = x[0];
      for (int i = 1; i < kQK; ++i) {
        min = std::min(min, x[i]);
        max = std::max(max, x[i]);
      }
      const float d = (max - min) / kMaxQ;
      const float id = d != 0 ? 1.0f / d : 0.0f;
      b.d = f32_to_fp16(d);
      b.m = f32_to_fp16(min);
      for (int i = 0; i < kQK; ++i) q[i] = std::min(kMaxQ, static_cast<int>((x[i] - min) * id + 0.5f));
    } else {
      // ggml quantize_row_q4_0_ref: the signed max-magnitude element maps to -kHalf exactly, so the
      // unused level kHalf is on the other side.
      float amax = 0, max = 0;
      for (int i = 0; i < kQK; ++i) {
        if (amax < std::fabs(x[i])) {
          amax = std::fabs(x[i]);
          max = x[i];
        }
      }
      const float d = max / -kHalf;
      const float id = d != 0 ? 1.0f / d : 0.0f;
      b.d = f32_to_fp16(d);
      // Truncation after +kHalf+0.5 is ggml's rounding (ties away from -inf, not to even).
      for (int i = 0; i < kQK; ++i) q[i] = std::min(kMaxQ, static_cast<int>(x[i] * id + (kHalf + 0.5f)));
    }
    pack(q, b);
  }

  // Importance-weighted: weights follow ggml's quantize_q4_0 (qw * sqrt(sigma2 + x^2)).
  static void encode_weighted(const float* x, const float* importance, int* q, B& b) {
    float sum_x2 = 0;
    for (int i = 0; i < kQK; ++i) sum_x2 += x[i] * x[i];
    const float sigma2 = sum_x2 / kQK;
    float w[kQK];
    for (int i = 0; i < kQK; ++i) w[i] = importance[i] * std::sqrt(sigma2 + x[i] * x[i]);
    if constexpr (kAffine) {
      uint8_t L[kQK], Laux[kQK];
      float neg_min = 0;
      const float d = make_qkx2_quants(kQK, kMaxQ, x, w, L, &neg_min, Laux, -1.f, 0.1f, 20, false);
      b.d = f32_to_fp16(d);
      b.m = f32_to_fp16(-neg_min);
      for (int i = 0; i < kQK; ++i) q[i] = L[i];
    } else {
      int8_t L[kQK];
      const float d = make_qx_quants(kQK, kHalf, x, L, 1, w);
      b.d = f32_to_fp16(d);
      for (int i = 0; i < kQK; ++i) q[i] = L[i];
    }
  }

  // One grid per block: d * level + m, or d * (level - kHalf).
  static void grids(const B& b, GroupGrid* g) {
    const float d = fp16_to_f32(b.d);
    if constexpr (kAffine)
      *g = {d, fp16_to_f32(b.m), 0, kMaxQ};
    else
      *g = {d, -kHalf * d, 0, kMaxQ};
  }
  static void set_levels(B& b, const int* levels) {
    if constexpr (kBits == 5) std::memset(b.qh, 0, sizeof b.qh);
    pack(levels, b);
  }

  static constexpr RowCodec codec = with_grids<B, kQK, kQK, Nibble>(with_dot<B, Act, kQK, dot>(
      make_codec<B, kQK, decode, encode>(), kAffine ? DType::Q8_1 : DType::Q8_0));
};

// Q8_0 and Q8_1: amax/127 scale, round half away from zero (roundf); Q8_1 also stores d*sum(q).
template <class B>
struct Byte {
  static constexpr bool kHasSum = requires(B b) { b.s; };

  static void decode(const B& b, float* y) {
    const float d = fp16_to_f32(b.d);
    for (int i = 0; i < kQK; ++i) y[i] = b.qs[i] * d;
  }

  // Two roundings of the same scheme. The format's (encode; ggml's quantize_row_q8_0_ref, gguf-py):
  // id = 1/(amax/127), ties away from zero. ggml-cpu's x86 activation path (encode_activation, used
  // before dot products): id = 127/amax, ties to even (the SIMD rounding mode). Levels differ only at
  // a tie or a last-bit difference in id, but matching the peer keeps tern's activations its own.
  template <bool kActivation>
  static void encode_with(const float* x, B& b) {
    float amax = 0;
    for (int i = 0; i < kQK; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127;
    const float id = kActivation ? (amax != 0 ? 127.f / amax : 0.0f) : (d != 0 ? 1.0f / d : 0.0f);
    b.d = f32_to_fp16(d);
    int sum = 0;
    for (int i = 0; i < kQK; ++i) {
      // nearbyint in the default FP environment rounds ties to even.
      b.qs[i] = static_cast<int8_t>(kActivation ? std::nearbyint(x[i] * id) : std::round(x[i] * id));
      sum += b.qs[i];
    }
    if constexpr (kHasSum) b.s = f32_to_fp16(d * static_cast<float>(sum));
  }
  static void encode(const float* x, const float*, B& b) { encode_with<false>(x, b); }
  static void encode_activation(const float* x, const float*, B& b) { encode_with<true>(x, b); }

  // Q8_0 weights against Q8_0 activations (ggml's vec_dot_q8_0_q8_0).
  static float dot(const B& w, const B& a) {
    int sumi = 0;
    for (int i = 0; i < kQK; ++i) sumi += w.qs[i] * a.qs[i];
    return fp16_to_f32(w.d) * fp16_to_f32(a.d) * static_cast<float>(sumi);
  }

  static void grids(const B& b, GroupGrid* g) { *g = {fp16_to_f32(b.d), 0, -128, 127}; }
  static void set_levels(B& b, const int* levels) {
    for (int i = 0; i < kQK; ++i) b.qs[i] = static_cast<int8_t>(levels[i]);
  }

  static constexpr RowCodec codec = with_activation<B, kQK, encode_activation>(
      kHasSum ? make_codec<B, kQK, decode, encode>()
              : with_grids<B, kQK, kQK, Byte>(with_dot<B, B, kQK, dot>(make_codec<B, kQK, decode, encode>(), DType::Q8_0)));
};

}  // namespace

const RowCodec* legacy_codec(DType t) {
  switch (t) {
    case DType::Q4_0: return &Nibble<BlockQ4_0>::codec;
    case DType::Q4_1: return &Nibble<BlockQ4_1>::codec;
    case DType::Q5_0: return &Nibble<BlockQ5_0>::codec;
    case DType::Q5_1: return &Nibble<BlockQ5_1>::codec;
    case DType::Q8_0: return &Byte<BlockQ8_0>::codec;
    case DType::Q8_1: return &Byte<BlockQ8_1>::codec;
    default: return nullptr;
  }
}

}  // namespace tern::quant
