// Dense symmetric-matrix steps the calibrated quantisers need (GPTQ, SparseGPT), in double:
// n is at most a model's FFN width, so plain O(n^3) loops over contiguous rows are enough.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tern::quant {

// The upper-triangular U with A^-1 = U^T U, for a symmetric positive definite A (n x n, row-major).
// Returns false (and leaves U unspecified) when A is not positive definite.
bool inverse_cholesky_upper(std::span<const double> a, int64_t n, std::vector<double>& u);

}  // namespace tern::quant
