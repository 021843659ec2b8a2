// The CPU backend's inner kernels, one table per ISA variant. A variant fills the entries it
// accelerates; kernels(isa) completes the rest from the generic table (scalar quant::vec_dot
// arithmetic and plain loops), which every variant is tested against.
#pragma once

#include <cstdint>

#include "backends/cpu/isa.h"
#include "core/dtype.h"

namespace tern::cpu {

// Dot product of a weight row of type w with an activation row of quant::vec_dot_type(w), n elements.
using VecDotFn = float (*)(const void* w, const void* a, int64_t n);

// Element-wise primitives of the attention kernel (backends/cpu/attention.h).
using F16ToF32Fn = void (*)(const uint16_t* x, float* y, int64_t n);
// Products of f32 inputs summed in double: attention scores are large sums with cancellation, and
// an f32 sum moves them enough to flip the f16 rounding of the softmax weights that follows.
using DotF32Fn = float (*)(const float* x, const float* y, int64_t n);
using AxpyF32Fn = void (*)(float a, const float* x, float* y, int64_t n);  // y += a * x

inline constexpr size_t kTypeSlots = 32;  // GGUF type ids tern knows are below this

// A plain aggregate, built as `Kernels k{}`: no default member initialisers, so no inline
// constructor exists that an ISA-specific translation unit could emit and the linker could then
// pick for the generic code.
struct Kernels {
  VecDotFn vec_dot[kTypeSlots];
  F16ToF32Fn f16_to_f32;
  DotF32Fn dot_f32;
  AxpyF32Fn axpy_f32;
};

// The variant's complete table: its own kernels, the generic ones where it has none.
const Kernels& kernels(Isa isa);
// Per type: the variant's dot product (never null for weight types).
VecDotFn vec_dot_for(Isa isa, DType w);

}  // namespace tern::cpu
