// AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration",
// 2023): before round-to-nearest, scale each input channel of the weights up by s_i and the input
// down by the same factor (folded into the preceding RMSNorm weight or matrix rows, so the float
// model is unchanged). Channels with large activations then lose less to rounding. The scales are
// s = mean|x|^alpha, normalised to a geometric mean range of 1, with alpha chosen on a grid to
// minimise the output error of the matrices that read this input.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/dtype.h"

namespace tern {
class ThreadPool;
}

namespace tern::quant {

struct AwqMatrix {
  const float* w;  // rows x n, row-major (w[r * n + i] multiplies input i)
  int64_t rows;
};

struct AwqConfig {
  int grid = 20;           // alpha in {0, 1/grid, ..., (grid-1)/grid}, as AutoAWQ
  int64_t max_rows = 256;  // rows per matrix the output error is measured on (an even sample)
};

struct AwqResult {
  std::vector<float> scales;  // s_i, n of them: weights' column i times s_i, input i divided by s_i
  double alpha = 0;
  double plain_error = 0;  // output error of plain round-to-nearest (alpha 0, s = 1)
  double error = 0;        // output error at the chosen alpha
};

// The output error of a candidate is sum over the sampled rows of dW H dW^T, dW = Q(w * s) / s - w,
// with H = E[x x^T] (n x n) of the shared input and Q the type's round-to-nearest quantiser.
// x_abs_mean: E|x_i|, n of them.
AwqResult awq_search(DType t, std::span<const AwqMatrix> mats, int64_t n, std::span<const double> h,
                     std::span<const double> x_abs_mean, const AwqConfig& config, ThreadPool* pool = nullptr);

// AWQ's weight clipping (AutoAWQ's auto_clip), applied after the scales: for each block of the type,
// round-to-nearest of the weights clamped to +-r * max|w| for r in {1, 0.95, ..., 0.5}, keeping the r
// whose output error through that block's inputs, dW H_bb dW^T, is smallest. Writes rows of type t.
// h: E[x x^T] of the (already rescaled) inputs, n x n.
void awq_clip_quantize(DType t, const float* w, int64_t rows, int64_t n, std::span<const double> h, void* out,
                       ThreadPool* pool = nullptr);

// s = x_abs_mean^alpha (at least 1e-4), divided by sqrt(max(s) * min(s)): AWQ's candidate scales.
std::vector<float> awq_scales(std::span<const double> x_abs_mean, double alpha);

}  // namespace tern::quant
