// AVX2 + FMA + F16C variant. This file alone is compiled with -mavx2 -mfma -mf16c and is reached only
// through kernels(Isa::Avx2) after a CPUID check; its kernels are kernels_x86.inc's.
#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/repack.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "quant/k_scales.h"

namespace tern::cpu {
namespace avx2 {
namespace {

// u8 x s8 products, four per int32 lane: pairs to int16 (no saturation at the level ranges used:
// |u8| <= 128 after the sign transfer, |s8| <= 127), then pairs of those.
inline __m256i dot_u8_s8_i32(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

inline __m256i dot_u8_s8_acc(__m256i acc, __m256i u, __m256i s) { return _mm256_add_epi32(acc, dot_u8_s8_i32(u, s)); }

#include "backends/cpu/kernels/kernels_x86.inc"

}  // namespace
}  // namespace avx2

Kernels make_avx2_kernels() { return avx2::x86_table(); }

}  // namespace tern::cpu

#else  // not an x86 build: no AVX2 variant (isa_supported says so)
namespace tern::cpu {
Kernels make_avx2_kernels() { return {}; }
}  // namespace tern::cpu
#endif
