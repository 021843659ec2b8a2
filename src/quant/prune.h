// Pruning a weight matrix to a share of zeros (tern quantize --method magnitude|wanda|sparsegpt):
// - magnitude (Han et al., "Learning both Weights and Connections", 2015): the smallest |w| of
//   each row go;
// - Wanda (Sun et al., "A Simple and Effective Pruning Approach for Large Language Models", 2023):
//   the smallest |w_ij| * ||x_j|| of each output row, ||x_j|| the norm of input j over the
//   calibration tokens, and nothing else changes;
// - SparseGPT (Frantar and Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned
//   in One-Shot", 2023): GPTQ's column sweep with rounding replaced by removal. Each removed
//   weight's error is spread over the row's columns not yet visited through the inverse Hessian of
//   the layer's inputs, so the kept weights compensate; the mask is chosen per block of 128 columns
//   from w^2 / U_jj^2 (U the upper Cholesky factor of H^-1, as the GPTQ factor holds it).
// Patterns: unstructured (a share of each row; for SparseGPT of each 128-column block, across its
// rows, as the paper's code does) or n:m (n of every m consecutive weights of a row kept: 2:4 is
// what sparse tensor cores run).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "quant/gptq.h"

namespace tern {
class ThreadPool;
}

namespace tern::quant {

struct SparsityPattern {
  double sparsity = 0.5;  // unstructured: the share of weights zeroed
  int keep = 0, group = 0;  // n:m: `keep` of every `group` consecutive weights stay (group > 0)
  bool n_of_m() const { return group > 0; }
  // The share of a row zeroed.
  double zeroed() const { return n_of_m() ? 1.0 - static_cast<double>(keep) / group : sparsity; }
};

// "" (unstructured at `sparsity`) or "N:M"; throws naming the fault.
SparsityPattern parse_sparsity(std::string_view pattern, double sparsity);

// Zeroes, per row of w (rows x n, row-major), the weights of lowest score: the row's share, or
// group - keep of every group. Ties go by column, lower first, so the result is deterministic.
void prune_by_score(float* w, const float* score, int64_t rows, int64_t n, const SparsityPattern& p);

void magnitude_prune(float* w, int64_t rows, int64_t n, const SparsityPattern& p);
// sum_sq[j]: the sum over calibration tokens of input j squared (InputStats::sum_sq).
void wanda_prune(float* w, int64_t rows, int64_t n, std::span<const double> sum_sq, const SparsityPattern& p);
// f: gptq_factor of the inputs' Hessian without act-order (columns in their own order).
void sparsegpt_prune(float* w, int64_t rows, int64_t n, const GptqFactor& f, const SparsityPattern& p,
                     ThreadPool* pool = nullptr, int64_t block = 128);

}  // namespace tern::quant
