// AVX2 + FMA + F16C kernels. This file alone is compiled with -mavx2 -mfma -mf16c, and it is reached
// only through kernels(Isa::Avx2) after a CPUID check. It therefore defines everything it uses
// itself (intrinsics, file-local functions, no shared inline helpers), so that no AVX2-compiled
// copy of an inline function can stand in for the generic one elsewhere.
//
// Dot products follow ggml's x86 arithmetic: per 32-element block, eight int32 lanes (elements 4k..4k+3)
// from byte multiply-adds, scaled by the product of the two f16 scales and accumulated with FMA into
// eight float lanes, then a fixed horizontal sum. Integer parts are exact, so the result differs from
// quant::vec_dot only in float summation order.
#include "backends/cpu/kernels/kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstring>

namespace tern::cpu {
namespace {

constexpr int kQK = 32;

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0..15), then high nibbles (16..31).
inline __m256i nibbles_to_bytes(const uint8_t* q) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(lo, 4), lo);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Sums of four adjacent u8*s8 products per int32 lane, as float. Pair sums fit int16 for the level
// ranges used here (|u8| <= 127 after the sign transfer below, |s8| <= 127).
inline __m256 dot_u8_s8(__m256i u, __m256i s) {
  const __m256i pairs = _mm256_maddubs_epi16(u, s);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

// Signed x signed through the unsigned form: |x| * (y with x's sign).
inline __m256 dot_s8_s8(__m256i x, __m256i y) {
  return dot_u8_s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

inline float hsum(__m256 v) {
  __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

// Block layouts (bytes): Q4_0 {f16 d, 16 nibbles} 18; Q4_1 {f16 d, f16 m, 16 nibbles} 20;
// Q8_0 {f16 d, 32 int8} 34; Q8_1 {f16 d, f16 s, 32 int8} 36.
float dot_q4_0_q8_0(const void* vw, const void* va, int64_t n) {
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / kQK; ++b, w += 18, a += 34) {
    const __m256 d = _mm256_set1_ps(h2f(w) * h2f(a));
    const __m256i qw = _mm256_sub_epi8(nibbles_to_bytes(w + 2), _mm256_set1_epi8(8));
    const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 2));
    acc = _mm256_fmadd_ps(d, dot_s8_s8(qw, qa), acc);
  }
  return hsum(acc);
}

float dot_q4_1_q8_1(const void* vw, const void* va, int64_t n) {
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0;  // weight min times the activation block's stored sum
  for (int64_t b = 0; b < n / kQK; ++b, w += 20, a += 36) {
    mins += h2f(w + 2) * h2f(a + 2);
    const __m256 d = _mm256_set1_ps(h2f(w) * h2f(a));
    const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 4));
    acc = _mm256_fmadd_ps(d, dot_u8_s8(nibbles_to_bytes(w + 4), qa), acc);
  }
  return hsum(acc) + mins;
}

float dot_q8_0_q8_0(const void* vw, const void* va, int64_t n) {
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / kQK; ++b, w += 34, a += 34) {
    const __m256 d = _mm256_set1_ps(h2f(w) * h2f(a));
    const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2));
    const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 2));
    acc = _mm256_fmadd_ps(d, dot_s8_s8(qw, qa), acc);
  }
  return hsum(acc);
}

}  // namespace

Kernels make_avx2_kernels() {
  Kernels k{};
  k.vec_dot[static_cast<size_t>(DType::Q4_0)] = dot_q4_0_q8_0;
  k.vec_dot[static_cast<size_t>(DType::Q4_1)] = dot_q4_1_q8_1;
  k.vec_dot[static_cast<size_t>(DType::Q8_0)] = dot_q8_0_q8_0;
  return k;
}

}  // namespace tern::cpu

#else  // not an x86 build: no AVX2 variant (isa_supported says so)
namespace tern::cpu {
Kernels make_avx2_kernels() { return {}; }
}  // namespace tern::cpu
#endif
