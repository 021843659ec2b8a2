#include "quant/linalg.h"

#include <cmath>

#include "core/error.h"

namespace tern::quant {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TERN_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TERN_ISA_CLONES
#endif

namespace {

// Eight independent partial sums, so the loop vectorises without reassociating one running sum.
TERN_ISA_CLONES double dot(const double* a, const double* b, int64_t n) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  double s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  for (double v : acc) s += v;
  return s;
}

TERN_ISA_CLONES void axpy(double alpha, const double* x, double* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace

// With J the reversal permutation: if J A J = L L^T (Cholesky), then A = T T^T with T = J L J upper
// triangular, so A^-1 = T^-T T^-1 and U = T^-1. Both steps walk contiguous rows.
bool inverse_cholesky_upper(std::span<const double> a, int64_t n, std::vector<double>& u) {
  TERN_CHECK(n > 0 && a.size() == static_cast<size_t>(n * n), "matrix of {} values is not {} x {}", a.size(), n, n);
  std::vector<double> l(static_cast<size_t>(n * n), 0.0);  // Cholesky factor of J A J, lower
  for (int64_t i = 0; i < n; ++i) {
    double* li = l.data() + i * n;
    for (int64_t j = 0; j <= i; ++j) {
      const double* lj = l.data() + j * n;
      const double aij = a[(n - 1 - i) * n + (n - 1 - j)];
      const double s = aij - dot(li, lj, j);
      if (i == j) {
        if (!(s > 0) || !std::isfinite(s)) return false;
        li[i] = std::sqrt(s);
      } else {
        li[j] = s / lj[j];
      }
    }
  }
  // T[i][j] = L[n-1-i][n-1-j]; rows of U = T^-1 from the bottom up:
  // U[i][i] = 1 / T_ii, U[i][j] = -(1 / T_ii) * sum_{k > i} T_ik U_kj.
  u.assign(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = n - 1; i >= 0; --i) {
    const double* lrow = l.data() + (n - 1 - i) * n;  // T[i][k] = lrow[n - 1 - k]
    const double tii = lrow[n - 1 - i];
    double* ui = u.data() + i * n;
    for (int64_t k = i + 1; k < n; ++k) axpy(-lrow[n - 1 - k] / tii, u.data() + k * n + k, ui + k, n - k);
    ui[i] = 1.0 / tii;
  }
  return true;
}

}  // namespace tern::quant
