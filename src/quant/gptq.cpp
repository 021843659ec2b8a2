#include "quant/gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/linalg.h"
#include "quant/quant.h"

namespace tern::quant {

GptqFactor gptq_factor(std::span<const double> h, int64_t n, const GptqConfig& config) {
  TERN_CHECK(n > 0 && h.size() == static_cast<size_t>(n * n), "GPTQ: Hessian of {} values is not {} x {}", h.size(), n, n);
  GptqFactor f;
  f.n = n;
  f.order.resize(static_cast<size_t>(n));
  std::iota(f.order.begin(), f.order.end(), 0);
  std::vector<double> diag(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) diag[i] = h[i * n + i];
  f.dead.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) f.dead[i] = diag[i] <= 0;
  if (config.act_order)
    std::stable_sort(f.order.begin(), f.order.end(), [&](int32_t a, int32_t b) { return diag[a] > diag[b]; });
  double mean = 0;  // of the diagonal with dead columns at 1, as the paper's code damps
  for (int64_t i = 0; i < n; ++i) mean += f.dead[i] ? 1.0 : diag[i];
  mean /= static_cast<double>(n);
  // H in column order, dead columns given a unit diagonal (their weights are zero anyway), damped.
  std::vector<double> hp(static_cast<size_t>(n * n));
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b) hp[a * n + b] = h[f.order[a] * n + f.order[b]];
  const double damp = config.damp * mean;
  for (int64_t a = 0; a < n; ++a) {
    if (f.dead[f.order[a]]) hp[a * n + a] = 1;
    hp[a * n + a] += damp;
  }
  TERN_CHECK(inverse_cholesky_upper(hp, n, f.u),
             "GPTQ: the calibration Hessian ({} x {}) is not positive definite even with damping {} (more calibration "
             "text, or a larger damping)",
             n, n, config.damp);
  f.diag.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) f.diag[i] = static_cast<float>(diag[i]);
  return f;
}

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TERN_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TERN_ISA_CLONES
#endif

// w[0..n) -= err * u[0..n): the error feedback into the columns not yet quantised.
TERN_ISA_CLONES void feed_error(double err, const double* u, double* w, int64_t n) {
  for (int64_t j = 0; j < n; ++j) w[j] -= err * u[j];
}

// One row's sweep: w (n, in column order, updated in place) -> levels (n, natural order) and the
// row's blocks in `row` (their grids from the type's own quantiser).
struct RowSweep {
  DType type;
  const GptqFactor& f;
  const GptqConfig& config;
  int64_t group, block_elems;
  size_t block_bytes;

  // Grids of block b (natural order) from the natural-order values `x` of that block.
  void choose_block(const float* x, int64_t b, uint8_t* row, GroupGrid* grids) const {
    const int64_t e0 = b * block_elems;
    uint8_t* dst = row + b * block_bytes;
    quantize_row(type, x, dst, block_elems, config.weighted_grids ? f.diag.data() + e0 : nullptr);
    row_grids(type, dst, block_elems, grids + e0 / group);
  }
};

}  // namespace

void gptq_quantize(DType t, const float* w, int64_t rows, const GptqFactor& f, const GptqConfig& config,
                         void* out, ThreadPool* pool) {
  const int64_t n = f.n, group = grid_group_size(t);
  TERN_CHECK(group > 0, "GPTQ: {} has no grid support (use q4_0, q4_1, q5_0, q5_1, q8_0, q3_k, q4_k or q5_k)",
             dtype_name(t));
  const int64_t block_elems = traits(t).block_elems;
  TERN_CHECK(n % block_elems == 0, "GPTQ: rows of {} are not whole {} blocks", n, dtype_name(t));
  const size_t rb = row_bytes(t, n);
  RowSweep sweep{t, f, config, group, block_elems, row_bytes(t, block_elems)};
  auto* dst = static_cast<uint8_t*>(out);

  constexpr int64_t kTile = 8;  // rows swept together, so each row of U is read once per tile
  auto run_tiles = [&](int64_t t0, int64_t t1) {
    std::vector<double> ws(static_cast<size_t>(kTile * n));
    std::vector<float> natural(static_cast<size_t>(n));
    std::vector<GroupGrid> grids(static_cast<size_t>(kTile * (n / group)));
    std::vector<int> levels(static_cast<size_t>(n));
    std::vector<std::vector<int>> tile_levels(kTile, std::vector<int>(static_cast<size_t>(n)));
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t r0 = tile * kTile, nr = std::min(kTile, rows - r0);
      for (int64_t r = 0; r < nr; ++r) {
        const float* wr = w + (r0 + r) * n;
        for (int64_t i = 0; i < n; ++i) natural[i] = f.dead[i] ? 0.0f : wr[i];
        for (int64_t k = 0; k < n; ++k) ws[r * n + k] = natural[f.order[k]];
        // Act-order: every grid now, from the original weights.
        if (config.act_order)
          for (int64_t b = 0; b < n / block_elems; ++b)
            sweep.choose_block(natural.data() + b * block_elems, b, dst + (r0 + r) * rb, grids.data() + r * (n / group));
      }
      for (int64_t k = 0; k < n; ++k) {
        const int64_t c = f.order[k];
        const double* uk = f.u.data() + k * n;
        for (int64_t r = 0; r < nr; ++r) {
          double* wr = ws.data() + r * n;
          GroupGrid* g = grids.data() + r * (n / group);
          if (!config.act_order && c % block_elems == 0) {  // in natural order: this block's grid, from w as it is now
            for (int64_t e = 0; e < block_elems; ++e) natural[e] = static_cast<float>(wr[c + e]);
            sweep.choose_block(natural.data(), c / block_elems, dst + (r0 + r) * rb, g);
          }
          const GroupGrid& gc = g[c / group];
          const int level = gc.nearest(static_cast<float>(wr[k]));
          tile_levels[r][c] = level;
          const double err = (wr[k] - gc.value(level)) / uk[k];
          feed_error(err, uk + k + 1, wr + k + 1, n - k - 1);
        }
      }
      for (int64_t r = 0; r < nr; ++r) set_row_levels(t, dst + (r0 + r) * rb, n, tile_levels[r].data());
    }
  };
  const int64_t tiles = (rows + kTile - 1) / kTile;
  if (pool)
    pool->parallel_for_dynamic(tiles, run_tiles);
  else
    run_tiles(0, tiles);
}

double output_error(DType t, const float* w, const void* q, int64_t rows, int64_t n, std::span<const double> h,
                    int64_t max_rows) {
  TERN_CHECK(h.size() == static_cast<size_t>(n * n), "output error: Hessian of {} values is not {} x {}", h.size(), n, n);
  const int64_t step = std::max<int64_t>(1, rows / std::max<int64_t>(1, max_rows));
  const size_t rb = row_bytes(t, n);
  std::vector<float> deq(static_cast<size_t>(n));
  std::vector<double> d(static_cast<size_t>(n));
  double total = 0;
  int64_t used = 0;
  for (int64_t r = 0; r < rows; r += step, ++used) {
    dequantize_row(t, static_cast<const uint8_t*>(q) + r * rb, deq.data(), n);
    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<double>(deq[i]) - w[r * n + i];
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      double hi = 0;
      for (int64_t j = 0; j < n; ++j) hi += h[i * n + j] * d[j];
      s += d[i] * hi;
    }
    total += s;
  }
  return used ? total / static_cast<double>(used) : 0.0;
}

}  // namespace tern::quant
