// AVX-512 (F, BW, VL) with VNNI variant. This file alone is compiled with those flags (plus AVX2, FMA,
// F16C) and is reached only through kernels(Isa::Avx512) after a CPUID check; its kernels are
// kernels_x86.inc's with the integer multiply-add as one vpdpbusd.
#include "backends/cpu/kernels/kernels.h"

#if defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace tern::cpu {
namespace avx512 {
namespace {

// vpdpbusd: four u8*s8 products summed into each int32 lane, no intermediate saturation; for the
// level ranges used the AVX2 pair sums never saturate either, so the lanes are identical.
inline __m256i dot_u8_s8_i32(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }

#include "backends/cpu/kernels/kernels_x86.inc"

}  // namespace
}  // namespace avx512

Kernels make_avx512_kernels() { return avx512::x86_table(); }

}  // namespace tern::cpu

#else
namespace tern::cpu {
Kernels make_avx512_kernels() { return {}; }
}  // namespace tern::cpu
#endif
