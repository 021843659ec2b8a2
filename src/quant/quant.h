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

// --- grids: what calibrated quantisers (GPTQ) round onto --------------------------------------------
// A block format stores each group of weights as levels on an affine grid, value = scale * level +
// offset with level in [lo, hi], the scale and offset fixed by the block's stored scale (and min).
// GPTQ picks the grids first (quantize_row of the weights, then row_grids), chooses every level
// itself, and writes the levels back into the blocks with set_row_levels, scales untouched.
struct GroupGrid {
  float scale = 0, offset = 0;
  int lo = 0, hi = 0;
  float value(int level) const { return scale * static_cast<float>(level) + offset; }
  int nearest(float x) const;  // the level whose value is closest to x
};
// Elements per group of t's grids; 0 where t has no grid support (the float types, Q2_K, Q6_K).
int grid_group_size(DType t);
// The grids of the groups of a row of n elements (whole blocks) of type t: n / grid_group_size(t).
void row_grids(DType t, const void* row, int64_t n, GroupGrid* grids);
// Replaces the levels of a row of type t by `levels` (n, each within its group's [lo, hi]); scales kept.
void set_row_levels(DType t, void* row, int64_t n, const int* levels);

// --- dot products, the arithmetic of a quantised matmul ---------------------------------------------
// The type a dot product with weight type w takes its activations in (ggml's vec_dot_type): Q8_0 for
// Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants, the weight's own type for F32/F16/BF16.
// Throws for types that are not weights (see is_weight_type).
DType vec_dot_type(DType w);
bool is_weight_type(DType w);

// n activations into t = vec_dot_type(some w), rounded as ggml-cpu rounds them on x86 (for Q8_0 and
// Q8_1 that differs from quantize_row in tie and last-bit cases; see quant_legacy.cpp).
void quantize_activation_row(DType t, const float* src, void* dst, int64_t n);

// Dot product of a weight row of type w with an activation row of type vec_dot_type(w), n elements
// each, with ggml's per-block arithmetic: integer sums of levels times the blocks' scales, and for
// Q4_1/Q5_1 the weight min times the activation block's stored f16 sum (not the exact sum; that is
// part of the peer's numerics). This is the reference that faster matmul kernels are tested against.
float vec_dot(DType w, const void* w_row, const void* a_row, int64_t n);

}  // namespace tern::quant
