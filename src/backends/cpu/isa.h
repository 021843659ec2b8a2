// Instruction-set variants of the CPU kernels, chosen once at run time from CPUID. TERN_CPU_ISA
// (generic, avx2, avx512) forces one, for tests and comparisons; asking for one the CPU lacks is an error.
#pragma once

#include <string_view>

namespace tern::cpu {

// ARM NEON (and SVE) variants are future work: on a non-x86 build only Generic exists, and the
// x86 translation units compile to empty tables (CMake gives them their flags only on x86).
enum class Isa {
  Generic,  // plain C++, any CPU
  Avx2,     // AVX2 + FMA + F16C
  Avx512,   // Avx2 plus AVX-512 F/BW/VL/DQ and VNNI (int8 dot products in one instruction)
};
// AVX512_BF16 is not used where present: on the Sapphire Rapids VM of 2026-11-27 one core ran
// vdpbf16ps at 0.5 per cycle (58 G multiply-adds/s, 32 per instruction) against two f32 FMAs per
// cycle (115 G/s), and a BF16 prefill built on it (rows and activations paired once, the same bits
// as the f32 tiles) ran SmolLM2 BF16 pp512 at 690 tok/s against their 840. BF16 weights go through
// the f32 FMA tiles (their bf16 values widened exactly).
inline constexpr Isa kAllIsas[] = {Isa::Generic, Isa::Avx2, Isa::Avx512};

std::string_view isa_name(Isa isa);
// Whether this CPU can run the variant (Generic always).
bool isa_supported(Isa isa);
// The best supported variant, or TERN_CPU_ISA's.
Isa selected_isa();

}  // namespace tern::cpu
