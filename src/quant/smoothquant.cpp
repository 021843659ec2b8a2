#include "quant/smoothquant.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace tern::quant {

std::vector<float> smoothquant_scales(std::span<const double> x_max_abs, std::span<const AwqMatrix> mats, int64_t n,
                                      double alpha) {
  TERN_CHECK(static_cast<int64_t>(x_max_abs.size()) == n, "SmoothQuant: {} activation maxima for {} channels",
             x_max_abs.size(), n);
  TERN_CHECK(alpha >= 0 && alpha <= 1, "SmoothQuant: migration strength {} outside [0, 1]", alpha);
  std::vector<double> w_max(static_cast<size_t>(n), 0.0);
  for (const AwqMatrix& m : mats)
    for (int64_t r = 0; r < m.rows; ++r)
      for (int64_t j = 0; j < n; ++j) w_max[j] = std::max(w_max[j], static_cast<double>(std::fabs(m.w[r * n + j])));
  std::vector<float> s(static_cast<size_t>(n), 1.0f);
  for (int64_t j = 0; j < n; ++j) {
    if (x_max_abs[j] <= 0 || w_max[j] <= 0) continue;
    s[j] = static_cast<float>(std::max(1e-5, std::pow(x_max_abs[j], alpha) / std::pow(w_max[j], 1.0 - alpha)));
  }
  return s;
}

}  // namespace tern::quant
