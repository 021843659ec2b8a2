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

#include <cmath>
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
    mins = std::fma(h2f(w + 2), h2f(a + 2), mins);  // contracted, as the peer's compiler does
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

void f16_to_f32_avx2(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  for (; i < n; ++i) y[i] = _cvtsh_ss(x[i]);
}

// In double, four lanes at a time (see DotF32Fn).
float dot_f32_avx2(const float* a, const float* b, int64_t n) {
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i)), _mm256_cvtps_pd(_mm_loadu_ps(b + i)), acc0);
    acc1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i + 4)), _mm256_cvtps_pd(_mm_loadu_ps(b + i + 4)), acc1);
  }
  const __m256d v = _mm256_add_pd(acc0, acc1);
  __m128d r = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  double s = _mm_cvtsd_f64(_mm_add_sd(r, _mm_unpackhi_pd(r, r)));
  for (; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(s);
}

void axpy_f32_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

Kernels make_avx2_kernels() {
  Kernels k{};
  k.vec_dot[static_cast<size_t>(DType::Q4_0)] = dot_q4_0_q8_0;
  k.vec_dot[static_cast<size_t>(DType::Q4_1)] = dot_q4_1_q8_1;
  k.vec_dot[static_cast<size_t>(DType::Q8_0)] = dot_q8_0_q8_0;
  k.f16_to_f32 = f16_to_f32_avx2;
  k.dot_f32 = dot_f32_avx2;
  k.axpy_f32 = axpy_f32_avx2;
  return k;
}

}  // namespace tern::cpu

#else  // not an x86 build: no AVX2 variant (isa_supported says so)
namespace tern::cpu {
Kernels make_avx2_kernels() { return {}; }
}  // namespace tern::cpu
#endif
