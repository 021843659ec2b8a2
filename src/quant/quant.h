// Reference (scalar) conversion between float rows and GGUF-compatible block formats.
// Bit-compatible with ggml: a file quantised by llama.cpp dequantises to the same floats here.
// These are the oracles that faster backend kernels are tested against.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tern::quant {

// n elements from a row of type t (F32, F16, BF16 or a block type) into floats.
// n must be a multiple of the type's block size (checked: throws tern::Error).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// n floats into a row of type t. `importance` (n weights, may be null) weights the rounding error
// where the format's search supports it (K-quants and the legacy types' scale search).
void quantize_row(DType t, const float* src, void* dst, int64_t n, const float* importance = nullptr);

// Whether quantize_row supports t (all types of the foundation issue do).
bool can_quantize(DType t);

}  // namespace tern::quant
