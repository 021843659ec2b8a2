#include "backends/cpu/isa.h"

#include <cstdlib>
#include <string>

#include "core/error.h"

namespace tern::cpu {

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Generic: return true;
    case Isa::Avx2:
#if defined(__x86_64__) || defined(__i386__)
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
      return false;
#endif
    case Isa::Avx512:
#if defined(__x86_64__) || defined(__i386__)
      // __builtin_cpu_supports also checks that the OS saves the AVX-512 state.
      return isa_supported(Isa::Avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni");
#else
      return false;
#endif
  }
  return false;
}

Isa selected_isa() {
  static const Isa isa = [] {
    if (const char* forced = std::getenv("TERN_CPU_ISA"); forced && *forced) {
      for (Isa i : kAllIsas) {
        if (isa_name(i) == forced) {
          TERN_CHECK(isa_supported(i), "TERN_CPU_ISA={}: this CPU cannot run it", forced);
          return i;
        }
      }
      fail("TERN_CPU_ISA={}: unknown (generic, avx2, avx512)", forced);
    }
    for (Isa i : {Isa::Avx512, Isa::Avx2})
      if (isa_supported(i)) return i;
    return Isa::Generic;
  }();
  return isa;
}

}  // namespace tern::cpu
