// Instruction-set variants of the CPU kernels, chosen once at run time from CPUID. TERN_CPU_ISA
// (generic, avx2) forces one, for tests and comparisons; asking for one the CPU lacks is an error.
#pragma once

#include <string_view>

namespace tern::cpu {

enum class Isa { Generic, Avx2 };

std::string_view isa_name(Isa isa);
// Whether this CPU can run the variant (Generic always).
bool isa_supported(Isa isa);
// The best supported variant, or TERN_CPU_ISA's.
Isa selected_isa();

}  // namespace tern::cpu
