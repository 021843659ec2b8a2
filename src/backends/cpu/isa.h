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
inline constexpr Isa kAllIsas[] = {Isa::Generic, Isa::Avx2, Isa::Avx512};

std::string_view isa_name(Isa isa);
// Whether this CPU can run the variant (Generic always).
bool isa_supported(Isa isa);
// The best supported variant, or TERN_CPU_ISA's.
Isa selected_isa();

}  // namespace tern::cpu
