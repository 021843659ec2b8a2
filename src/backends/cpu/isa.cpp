#include "backends/cpu/isa.h"

#include <cstdlib>
#include <string>

#include "core/error.h"

namespace tern::cpu {

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
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
  }
  return false;
}

Isa selected_isa() {
  static const Isa isa = [] {
    if (const char* forced = std::getenv("TERN_CPU_ISA"); forced && *forced) {
      for (Isa i : {Isa::Generic, Isa::Avx2}) {
        if (isa_name(i) == forced) {
          TERN_CHECK(isa_supported(i), "TERN_CPU_ISA={}: this CPU cannot run it", forced);
          return i;
        }
      }
      fail("TERN_CPU_ISA={}: unknown (generic, avx2)", forced);
    }
    return isa_supported(Isa::Avx2) ? Isa::Avx2 : Isa::Generic;
  }();
  return isa;
}

}  // namespace tern::cpu
