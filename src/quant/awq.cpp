#include "quant/awq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/quant.h"

namespace tern::quant {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TERN_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TERN_ISA_CLONES
#endif

namespace {

// d^T H d with H (symmetric) in float: y = H d as a sum of rows d_j * H[j, :] (element-wise, so it
// vectorises without reassociating a reduction), then d . y. The measure only ranks candidates.
TERN_ISA_CLONES double quadratic_form(const float* h, const float* d, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n), 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    const float dj = d[j];
    const float* hj = h + j * n;
    for (int64_t i = 0; i < n; ++i) y[i] += dj * hj[i];
  }
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += static_cast<double>(y[i]) * d[i];
  return total;
}

}  // namespace

std::vector<float> awq_scales(std::span<const double> x_abs_mean, double alpha) {
  std::vector<float> s(x_abs_mean.size());
  double lo = std::numeric_limits<double>::infinity(), hi = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const double v = std::max(1e-4, std::pow(x_abs_mean[i], alpha));
    s[i] = static_cast<float>(v);
    lo = std::min(lo, static_cast<double>(s[i]));
    hi = std::max(hi, static_cast<double>(s[i]));
  }
  const float norm = static_cast<float>(std::sqrt(hi * lo));
  for (float& v : s) v /= norm;
  return s;
}

AwqResult awq_search(DType t, std::span<const AwqMatrix> mats, int64_t n, std::span<const double> h,
                     std::span<const double> x_abs_mean, const AwqConfig& config, ThreadPool* pool) {
  TERN_CHECK(h.size() == static_cast<size_t>(n * n) && x_abs_mean.size() == static_cast<size_t>(n),
             "AWQ: statistics of the wrong size for {} inputs", n);
  TERN_CHECK(n % traits(t).block_elems == 0, "AWQ: rows of {} are not whole {} blocks", n, dtype_name(t));
  TERN_CHECK(config.grid >= 1 && config.max_rows >= 1, "AWQ: grid {} and max_rows {} must be positive", config.grid,
             config.max_rows);
  const std::vector<float> hf(h.begin(), h.end());
  // The sampled rows, as (matrix, row) pairs.
  std::vector<const float*> rows;
  for (const AwqMatrix& m : mats) {
    const int64_t step = std::max<int64_t>(1, m.rows / config.max_rows);
    for (int64_t r = 0; r < m.rows; r += step) rows.push_back(m.w + r * n);
  }
  const size_t rb = row_bytes(t, n);
  auto error_of = [&](const std::vector<float>& s) {
    std::vector<double> per_row(rows.size());
    auto work = [&](int64_t r0, int64_t r1) {
      std::vector<float> x(static_cast<size_t>(n)), d(static_cast<size_t>(n));
      std::vector<uint8_t> q(rb);
      for (int64_t r = r0; r < r1; ++r) {
        const float* w = rows[r];
        for (int64_t i = 0; i < n; ++i) x[i] = w[i] * s[i];
        quantize_row(t, x.data(), q.data(), n);
        dequantize_row(t, q.data(), d.data(), n);
        for (int64_t i = 0; i < n; ++i) d[i] = d[i] / s[i] - w[i];
        per_row[r] = quadratic_form(hf.data(), d.data(), n);
      }
    };
    if (pool)
      pool->parallel_for(static_cast<int64_t>(rows.size()), work);
    else
      work(0, static_cast<int64_t>(rows.size()));
    double total = 0;  // summed in row order: the result does not depend on the thread count
    for (double e : per_row) total += e;
    return total / static_cast<double>(std::max<size_t>(1, rows.size()));
  };

  AwqResult best;
  best.error = std::numeric_limits<double>::infinity();
  for (int g = 0; g < config.grid; ++g) {
    const double alpha = static_cast<double>(g) / config.grid;
    std::vector<float> s = awq_scales(x_abs_mean, alpha);
    const double e = error_of(s);
    if (g == 0) best.plain_error = e;
    if (e < best.error) {
      best.error = e;
      best.alpha = alpha;
      best.scales = std::move(s);
    }
  }
  return best;
}

void awq_clip_quantize(DType t, const float* w, int64_t rows, int64_t n, std::span<const double> h, void* out,
                       ThreadPool* pool) {
  const int64_t be = traits(t).block_elems;
  TERN_CHECK(h.size() == static_cast<size_t>(n * n) && n % be == 0, "AWQ clip: {} inputs do not fit {} blocks", n,
             dtype_name(t));
  const size_t bb = row_bytes(t, be), rb = row_bytes(t, n);
  // The diagonal blocks of H, in float.
  const int64_t nb = n / be;
  std::vector<float> hb(static_cast<size_t>(nb * be * be));
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t i = 0; i < be; ++i)
      for (int64_t j = 0; j < be; ++j) hb[(b * be + i) * be + j] = static_cast<float>(h[(b * be + i) * n + b * be + j]);
  constexpr int kSteps = 11;  // r = 1 - 0.05 * step
  auto work = [&](int64_t r0, int64_t r1) {
    std::vector<float> x(static_cast<size_t>(be)), d(static_cast<size_t>(be));
    std::vector<uint8_t> q(bb), best(bb);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t b = 0; b < nb; ++b) {
        const float* wb = w + r * n + b * be;
        float amax = 0;
        for (int64_t i = 0; i < be; ++i) amax = std::max(amax, std::fabs(wb[i]));
        double best_err = std::numeric_limits<double>::infinity();
        for (int step = 0; step < kSteps; ++step) {
          const float lim = amax * (1.0f - 0.05f * static_cast<float>(step));
          for (int64_t i = 0; i < be; ++i) x[i] = std::clamp(wb[i], -lim, lim);
          quantize_row(t, x.data(), q.data(), be);
          dequantize_row(t, q.data(), d.data(), be);
          for (int64_t i = 0; i < be; ++i) d[i] -= wb[i];
          const double e = quadratic_form(hb.data() + b * be * be, d.data(), be);
          if (e < best_err) {
            best_err = e;
            best = q;
          }
          if (amax == 0) break;
        }
        std::memcpy(static_cast<uint8_t*>(out) + r * rb + b * bb, best.data(), bb);
      }
    }
  };
  if (pool)
    pool->parallel_for(rows, work);
  else
    work(0, rows);
}

}  // namespace tern::quant
