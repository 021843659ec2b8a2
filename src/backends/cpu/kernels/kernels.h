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
// The same weight row against four activation rows at a, a + a_stride, ...: out[0..3]. Bit-identical
// to four VecDotFn calls; the weight block is loaded and unpacked once (prefill).
using VecDotRows4Fn = void (*)(const void* w, size_t w_stride, int64_t n_rows, const void* a, size_t a_stride,
                               int64_t n, float* out);
// The same with one activation row (decode): out[r]; a_stride unused.
using VecDotRows1Fn = VecDotRows4Fn;

// Prefill GEMM in two steps. gemm_prepare reads the quantised activations once per matmul into f32
// tables (block scales, sums: gemm_prep_per_block floats per activation block, per token), then
// gemm_panel multiplies a panel of up to kPanelRows weight rows (w, w + w_stride, ...) with all
// n_tok activation rows (a_stride apart): y[t * y_stride + r] = dot(row r, token t), bit-identical to
// VecDotFn per pair. The panel is unpacked once into cache-resident levels and scales.
inline constexpr int64_t kPanelRows = 8;

// F32, F16 and BF16 weights (row-major, w_stride bytes apart) against n_tok activation rows given as
// f32 (a_stride floats apart): the weight type's activation rows (F16/BF16: rounded to that type)
// widened exactly, which the caller does once per matmul. y[t * y_stride + r] = dot(row r, token t)
// for r < n_rows, bit-identical to VecDotFn on the unwidened rows. Many pairs run at once (decode
// as well as prefill): one pair's FMA chain alone is bound by the FMA latency, not by memory.
using GemmRowsFn = void (*)(const void* w, size_t w_stride, int64_t n_rows, const float* a, size_t a_stride,
                            int64_t n_tok, int64_t n, float* y, size_t y_stride);
using GemmPrepareFn = void (*)(const void* a, size_t a_stride, int64_t n_tok, int64_t n, float* prep);
using GemmPanelFn = void (*)(const void* w, size_t w_stride, int64_t n_rows, const void* a, size_t a_stride,
                             const float* prep, int64_t n_tok, int64_t n, float* y, size_t y_stride);

// Decode against Q4_0 repacked in groups of eight rows (backends/cpu/repack.h): n_groups groups
// (group_bytes apart) times one Q8_0 activation row -> out[8 * g + r]. Per row, each block's int32
// dot product is one lane (activation sums times -8 as its start), scaled and accumulated in block
// order with one FMA: every variant computes the same bits (the order differs from VecDotFn's).
using GemvX8Fn = void (*)(const void* w, size_t group_bytes, int64_t n_groups, const void* a, int64_t n, float* out);

// The same for n_tok activation rows (a_stride apart): y[t * y_stride + 8 * g + r], bit-identical
// to GemvX8Fn per token (prefill on repacked weights: each weight block is unpacked once for
// several tokens).
using GemmX8Fn = void (*)(const void* w, size_t group_bytes, int64_t n_groups, const void* a, size_t a_stride,
                          int64_t n_tok, int64_t n, float* y, size_t y_stride);

// x (n floats) -> activation blocks of the dot type (Q8_0 or Q8_1), exactly as
// quant::quantize_activation_row does.
using QuantizeActFn = void (*)(const float* x, void* out, int64_t n);

// Element-wise primitives of the attention kernel (backends/cpu/attention.h) and exact-mode matmuls.
// Products of f32 inputs summed in double (exact-mode matmul rows).
using DotF32Fn = float (*)(const float* x, const float* y, int64_t n);
// s[j] = exp(s[j] - m) for j < n (exp(-inf) = 0), returning their sum: exp by tern's own
// polynomial (exp_f32 in kernels.cpp: correctly rounded but within ~1e-10 of a rounding boundary),
// the sum over eight lanes then a fixed tree and the tail, so every variant gives the same bits.
using ExpSubSumFn = float (*)(float* s, int64_t n, float m);
// y[i] = f16(x[i]), nearest even (KV cache stores).
using F32ToF16Fn = void (*)(const float* x, uint16_t* y, int64_t n);
// o[i] = g[i] / (1 + exp(-g[i])) * u[i], exp as for ExpSubSumFn (o may alias g).
using SwigluFn = void (*)(const float* g, const float* u, float* o, int64_t n);
// y[i] = x[i] rounded to f16 (nearest even), widened to double.
using RoundF16Fn = void (*)(const float* x, double* y, int64_t n);
// RoPE on one token's n_heads heads in place (rope_rotate.inc says how); c, s: cos and sin of the
// half angles.
using RopeRotateFn = void (*)(float* v, int64_t n_heads, int64_t head_stride, const float* c, const float* s,
                              int64_t half, bool neox);
// The key or value rows of one attention chunk where they lie: position p's d elements at rows[p],
// f32, or f16 (f16) widened exactly as they are loaded. An f32 or f16 cache's rows go in place, so
// a decode step converts and copies nothing before its dot products; other cache types are
// converted to f32 rows first.
struct KvRows {
  const void* const* rows;
  bool f16;
};
// Attention scores of n_rows query rows (double, d each) against n_pos key rows:
// out[i * ld + p] = float(q_i . k_p) * scale, the dot in double. Queries rounded to f16 against f16
// keys have products exact in 22 bits, so for head sizes up to 2^31 the double sum is exact and
// the score is the exact one rounded once, whatever the summation order (all variants agree).
using ScoresFn = void (*)(const double* q, int64_t n_rows, KvRows k, int64_t n_pos, int64_t d, float scale, float* out,
                          int64_t ld);
// acc[i * d + c] += sum over p < n_pos of w[i * ld + p] * v_p[c], positions in order, one fused
// multiply-add each, a zero weight skipped (all variants agree).
using WeightedValuesFn = void (*)(const float* w, int64_t n_rows, int64_t ld, KvRows v, int64_t n_pos, int64_t d,
                                  float* acc);

inline constexpr size_t kTypeSlots = 32;  // GGUF type ids tern knows are below this

// A plain aggregate, built as `Kernels k{}`: no default member initialisers, so no inline
// constructor exists that an ISA-specific translation unit could emit and the linker could then
// pick for the generic code.
struct Kernels {
  VecDotFn vec_dot[kTypeSlots];
  VecDotRows1Fn vec_dot_rows1[kTypeSlots];  // may stay null: callers then use vec_dot per pair
  VecDotRows4Fn vec_dot_rows4[kTypeSlots];  // may stay null: callers then use vec_dot per pair
  GemmPanelFn gemm_panel[kTypeSlots];       // may stay null: callers then use vec_dot_rows4
  GemmRowsFn gemm_rows[kTypeSlots];         // may stay null: callers then use the entries above
  GemmPrepareFn gemm_prepare[kTypeSlots];
  int gemm_prep_per_block[kTypeSlots];
  DotF32Fn dot_f32;
  ScoresFn scores;
  WeightedValuesFn weighted_values;
  ExpSubSumFn exp_sub_sum;
  F32ToF16Fn f32_to_f16;
  SwigluFn swiglu;
  RoundF16Fn round_f16;
  RopeRotateFn rope_rotate;
  QuantizeActFn quantize_act[kTypeSlots];  // by activation type; null: quant::quantize_activation_row
  GemvX8Fn gemv_q4_0_x8;
  GemvX8Fn gemv_q4_k_x8;  // Q4_K groups of eight rows against a Q8_K row (same contract)
  GemmX8Fn gemm_q4_0_x8;  // may stay null: callers then run the GEMV per token
  GemmX8Fn gemm_q4_k_x8;
  GemvX8Fn gemv_q5_k_x8;  // Q5_K groups: Q4_K's arithmetic on 5-bit levels
  GemmX8Fn gemm_q5_k_x8;
  GemvX8Fn gemv_q8_0_x8;  // Q8_0 groups of eight rows against a Q8_0 row
  GemmX8Fn gemm_q8_0_x8;
  // Q4_1 groups of eight rows against a Q8_1 row: per row and block one FMA of the scaled integer
  // dot into one sum and one FMA of the row's min times the activation block's stored sum into
  // another (ggml keeps the min terms apart too); the row's result is their sum.
  GemvX8Fn gemv_q4_1_x8;
  GemmX8Fn gemm_q4_1_x8;
  // Q6_K and Q3_K groups of eight rows against a Q8_K row: per row and
  // super-block the exact int32 sum over sub-blocks of scale * (dot of the unsigned levels - offset
  // (32, 4) * the activation sub-block sum), then one FMA of it times the two scales.
  GemvX8Fn gemv_q6_k_x8;
  GemmX8Fn gemm_q6_k_x8;
  GemvX8Fn gemv_q3_k_x8;
  GemmX8Fn gemm_q3_k_x8;
  // Q2_K groups against a Q8_K row: per row and super-block isum = sum over sub-blocks of scale *
  // dot and msum = sum of min * activation sub-block sum, both exact; one FMA each (times d, dmin
  // and the activation scale) into two sums, the row's result their difference.
  GemvX8Fn gemv_q2_k_x8;
  GemmX8Fn gemm_q2_k_x8;
};

// The variant's complete table: its own kernels, the generic ones where it has none.
const Kernels& kernels(Isa isa);
// Per type: the variant's dot product (never null for weight types).
VecDotFn vec_dot_for(Isa isa, DType w);

}  // namespace tern::cpu
