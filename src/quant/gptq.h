// GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
// Transformers", 2022): quantise a weight matrix one input column at a time, and after each column
// spread its rounding error over the columns not yet quantised, in proportion to the inverse
// Hessian of the layer's output error (H = E[x x^T] over calibration inputs). The result is stored
// in a GGUF block type: each group's grid (scale, min) is that of the type's own round-to-nearest
// quantiser, GPTQ chooses the levels (quant.h, GroupGrid), so the file runs on the type's kernels.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/dtype.h"

namespace tern {
class ThreadPool;
}

namespace tern::quant {

struct GptqConfig {
  double damp = 0.01;  // added to H's diagonal, as a fraction of its mean (the paper's percdamp)
  // Columns in order of decreasing H_ii (the paper's "act-order"). Grids are then fixed before the
  // sweep from the original weights; otherwise each block's grid is chosen when the sweep reaches
  // it, from the weights as updated so far (as GPTQ does without static groups).
  bool act_order = false;
  // Grids from the type's importance-weighted scale search with H_ii as importance, rather than its
  // plain round-to-nearest (the imatrix rule).
  bool weighted_grids = true;
};

// What the sweep needs from H, computed once per input (q/k/v share one): the column order and U,
// the upper Cholesky factor of H^-1 in that order (H^-1 = U^T U).
struct GptqFactor {
  int64_t n = 0;
  std::vector<int32_t> order;   // order[k] = the column quantised k-th
  std::vector<double> u;        // n x n, row-major, upper triangle
  std::vector<float> diag;      // H_ii by input (natural order): the grids' importance
  std::vector<uint8_t> dead;    // columns whose input is always zero: their weights become zero
};

// H: the mean second moment of the inputs, n x n row-major (InputStats::hessian). Throws when H
// plus damping is not positive definite, naming the damping tried.
GptqFactor gptq_factor(std::span<const double> h, int64_t n, const GptqConfig& config);

// Quantises `rows` rows of n weights (w[r * n + i] multiplies input i) into type t, writing rows of
// row_bytes(t, n) bytes to `out`. Rows run in parallel on `pool` when given.
void gptq_quantize(DType t, const float* w, int64_t rows, const GptqFactor& factor, const GptqConfig& config,
                         void* out, ThreadPool* pool = nullptr);

// tr(dW H dW^T) / rows for dW = decoded(q) - w over a sample of at most max_rows rows: the output
// error a quantised matrix adds, as GPTQ and AWQ measure it.
double output_error(DType t, const float* w, const void* q, int64_t rows, int64_t n, std::span<const double> h,
                    int64_t max_rows = 64);

}  // namespace tern::quant
