// The CPU backend's inner kernels, one table per ISA variant. A null entry means "no kernel for this
// type in this variant": callers fall back to the generic (scalar quant::vec_dot) arithmetic, which
// every variant is tested against.
#pragma once

#include <cstdint>

#include "backends/cpu/isa.h"
#include "core/dtype.h"

namespace tern::cpu {

// Dot product of a weight row of type w with an activation row of quant::vec_dot_type(w), n elements.
using VecDotFn = float (*)(const void* w, const void* a, int64_t n);

inline constexpr size_t kTypeSlots = 32;  // GGUF type ids tern knows are below this

// A plain aggregate, built as `Kernels k{}`: no default member initialisers, so no inline
// constructor exists that an ISA-specific translation unit could emit and the linker could then
// pick for the generic code.
struct Kernels {
  VecDotFn vec_dot[kTypeSlots];
};

// The variant's table (entries for the types it accelerates).
const Kernels& kernels(Isa isa);
// Per type: the variant's kernel, else the generic one (never null for weight types).
VecDotFn vec_dot_for(Isa isa, DType w);

}  // namespace tern::cpu
