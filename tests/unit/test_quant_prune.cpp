// Pruning (src/quant/prune.h): the patterns hold exactly, the lowest scores go, Wanda weighs by the
// input norms, and SparseGPT's error feedback beats removing weights alone. The SparseGPT sweep
// itself is checked against the paper's code in tests/python/test_quant_calibrated.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "quant/gptq.h"
#include "quant/input_stats.h"
#include "quant/prune.h"
#include "quant/quant.h"

using namespace tern;
using namespace tern::quant;

namespace {

std::vector<float> random_weights(int64_t rows, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> w(static_cast<size_t>(rows * n));
  for (auto& v : w) v = d(rng);
  return w;
}

// Correlated inputs with a few loud channels, as LLM activations have.
std::vector<float> correlated_inputs(int64_t tokens, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> mix(static_cast<size_t>(n * n)), z(static_cast<size_t>(tokens * n)), x(z.size());
  for (auto& v : mix) v = d(rng) / std::sqrt(static_cast<float>(n));
  for (auto& v : z) v = d(rng);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < n; ++j) {
      float s = 0;
      for (int64_t k = 0; k < n; ++k) s += z[t * n + k] * mix[k * n + j];
      x[t * n + j] = s * (j % 17 == 0 ? 8.0f : 1.0f);
    }
  return x;
}

double output_error(const std::vector<float>& w, const std::vector<float>& p, int64_t rows, int64_t n,
                    const std::vector<double>& h) {
  return quant::output_error(DType::F32, w.data(), p.data(), rows, n, h, rows);
}

int64_t zeros(const float* v, int64_t n) { return std::count(v, v + n, 0.0f); }

}  // namespace

TEST(Prune, ParsesPatterns) {
  EXPECT_EQ(parse_sparsity("2:4", 0.5).keep, 2);
  EXPECT_EQ(parse_sparsity("2:4", 0.5).group, 4);
  EXPECT_DOUBLE_EQ(parse_sparsity("2:4", 0.9).zeroed(), 0.5);
  EXPECT_DOUBLE_EQ(parse_sparsity("", 0.3).zeroed(), 0.3);
  for (const char* bad : {"4:2", "0:4", "2:2", "a:4", "2:", ":4", "2-4", "1:100"}) EXPECT_THROW(parse_sparsity(bad, 0.5), Error) << bad;
  EXPECT_THROW(parse_sparsity("", 0.0), Error);
  EXPECT_THROW(parse_sparsity("", 1.0), Error);
}

TEST(Prune, MagnitudeZeroesTheSmallestShareOfEachRow) {
  const int64_t rows = 7, n = 96;
  const auto w0 = random_weights(rows, n, 1);
  auto w = w0;
  magnitude_prune(w.data(), rows, n, parse_sparsity("", 0.5));
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(zeros(w.data() + r * n, n), n / 2) << "row " << r;
    float kept_min = INFINITY, cut_max = 0;
    for (int64_t j = 0; j < n; ++j) {
      const float a = std::fabs(w0[r * n + j]);
      if (w[r * n + j] == 0) {
        cut_max = std::max(cut_max, a);
      } else {
        kept_min = std::min(kept_min, a);
        EXPECT_EQ(w[r * n + j], w0[r * n + j]);
      }
    }
    EXPECT_LE(cut_max, kept_min) << "row " << r;
  }
}

TEST(Prune, TwoOfFourKeepsTheTwoLargestOfEachGroup) {
  const int64_t rows = 5, n = 64;
  const auto w0 = random_weights(rows, n, 2);
  auto w = w0;
  magnitude_prune(w.data(), rows, n, parse_sparsity("2:4", 0.5));
  for (int64_t g = 0; g < rows * n; g += 4) {
    EXPECT_EQ(zeros(w.data() + g, 4), 2);
    std::vector<float> a(w0.begin() + g, w0.begin() + g + 4);
    for (auto& v : a) v = std::fabs(v);
    std::sort(a.begin(), a.end());
    for (int e = 0; e < 4; ++e) {
      if (w[g + e] != 0) EXPECT_GE(std::fabs(w0[g + e]), a[2]);
    }
  }
  EXPECT_THROW(magnitude_prune(w.data(), 1, 6, parse_sparsity("2:4", 0.5)), Error);  // 6 is not whole groups
}

TEST(Prune, WandaWeighsEachWeightByItsInputsNorm) {
  // Magnitude would drop the second weight (0.9 < 1.0); its input is 100x louder, so Wanda drops the first.
  std::vector<float> w = {1.0f, 0.9f}, m = w;
  const std::vector<double> sum_sq = {0.01, 100.0};
  wanda_prune(w.data(), 1, 2, sum_sq, parse_sparsity("", 0.5));
  magnitude_prune(m.data(), 1, 2, parse_sparsity("", 0.5));
  EXPECT_EQ(w, (std::vector<float>{0.0f, 0.9f}));
  EXPECT_EQ(m, (std::vector<float>{1.0f, 0.0f}));
}

TEST(Prune, SparseGptBeatsWandaAndMagnitudeOnOutputError) {
  const int64_t rows = 32, n = 256, tokens = 600;
  const auto w0 = random_weights(rows, n, 3);
  const auto x = correlated_inputs(tokens, n, 4);
  InputStats stats(n, true);
  stats.add(x.data(), tokens);
  const std::vector<double> h = stats.hessian();
  const GptqFactor f = gptq_factor(h, n, {});
  for (const char* pattern : {"", "2:4"}) {
    const auto p = parse_sparsity(pattern, 0.5);
    auto mag = w0, wanda = w0, sgpt = w0;
    magnitude_prune(mag.data(), rows, n, p);
    wanda_prune(wanda.data(), rows, n, stats.sum_sq(), p);
    sparsegpt_prune(sgpt.data(), rows, n, f, p);
    EXPECT_EQ(zeros(sgpt.data(), rows * n), rows * n / 2) << pattern;  // exact for both patterns here
    const double em = output_error(w0, mag, rows, n, h), ew = output_error(w0, wanda, rows, n, h),
                 es = output_error(w0, sgpt, rows, n, h);
    EXPECT_LT(ew, em) << pattern;
    EXPECT_LT(es, 0.8 * ew) << pattern;
  }
}
