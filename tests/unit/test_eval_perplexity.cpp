// Perplexity windows and scoring: every token scored once with the promised context; the scorer's
// sums against a direct double-precision computation; and, on the default model, the windowed
// perplexity of one whole-text window equal to exp(mean NLL) from Engine::logits.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "eval/perplexity.h"
#include "model_files.h"
#include "tern/engine.h"

namespace tern::eval {
namespace {

TEST(PerplexityWindows, EveryTokenScoredOnceWithContext) {
  for (bool bos : {false, true})
    for (int64_t n : {1, 2, 3, 17, 100, 513})
      for (int64_t ctx : {2, 5, 16, 64})
        for (int64_t stride : {int64_t{1}, ctx / 2 + 1, ctx}) {
          const auto windows = plan_windows(n, ctx, stride, bos);
          std::vector<int> scored(static_cast<size_t>(n), 0);
          for (size_t i = 0; i < windows.size(); ++i) {
            const Window& w = windows[i];
            ASSERT_LE(w.end - w.begin, ctx);
            ASSERT_LE(w.begin, w.first_scored);
            ASSERT_LT(w.first_scored, w.end) << "a window that scores nothing";
            if (!bos) ASSERT_LT(w.begin, w.first_scored) << "a token without a predecessor in its window";
            if (i > 0) ASSERT_GE(w.first_scored - w.begin, std::min(ctx - stride, w.first_scored));
            for (int64_t t = w.first_scored; t < w.end; ++t) ++scored[t];
          }
          for (int64_t t = 0; t < n; ++t)
            ASSERT_EQ(scored[t], (t == 0 && !bos) ? 0 : 1) << "n=" << n << " ctx=" << ctx << " stride=" << stride << " token " << t;
        }
}

TEST(PerplexityWindows, RejectsBadGeometry) {
  EXPECT_THROW(plan_windows(10, 8, 0, false), std::exception);
  EXPECT_THROW(plan_windows(10, 8, 9, false), std::exception);
  EXPECT_THROW(plan_windows(10, 1, 1, false), std::exception);
  EXPECT_NO_THROW(plan_windows(10, 1, 1, true));
}

TEST(PerplexityScorer, MatchesDirectComputation) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0, 3);
  const int V = 37, N = 50;
  Scorer s;
  double nll = 0, kl = 0, base_nll = 0;
  int same = 0;
  for (int t = 0; t < N; ++t) {
    std::vector<float> a(V), b(V);
    for (auto& x : a) x = nd(rng);
    for (auto& x : b) x = nd(rng) * 0.5f + (t % 3 ? 0.0f : 1.0f);
    const int32_t target = static_cast<int32_t>(rng() % V);
    s.add(a, target, b);
    double za = 0, zb = 0;
    for (int i = 0; i < V; ++i) za += std::exp(double{a[i]}), zb += std::exp(double{b[i]});
    nll += std::log(za) - a[target];
    base_nll += std::log(zb) - b[target];
    for (int i = 0; i < V; ++i) {
      const double p = std::exp(double{b[i]}) / zb, q = std::exp(double{a[i]}) / za;
      kl += p * std::log(p / q);
    }
    same += std::max_element(a.begin(), a.end()) - a.begin() == std::max_element(b.begin(), b.end()) - b.begin();
  }
  EXPECT_EQ(s.count(), N);
  EXPECT_NEAR(s.mean_nll(), nll / N, 1e-9);
  EXPECT_NEAR(s.perplexity(), std::exp(nll / N), 1e-9 * std::exp(nll / N));
  EXPECT_NEAR(s.base_perplexity(), std::exp(base_nll / N), 1e-9 * std::exp(base_nll / N));
  EXPECT_NEAR(s.mean_kl(), kl / N, 1e-9);
  EXPECT_DOUBLE_EQ(s.top1_agreement(), static_cast<double>(same) / N);
  EXPECT_GT(s.nll_stderr(), 0);
}

TEST(PerplexityScorer, IdenticalDistributionsHaveNoDivergence) {
  std::vector<float> a = {1, -2, 0.5f, 3, 3.25f};
  Scorer s;
  for (int t = 0; t < 5; ++t) s.add(a, t, a);
  EXPECT_NEAR(s.mean_kl(), 0, 1e-12);
  EXPECT_EQ(s.top1_agreement(), 1.0);
  EXPECT_THROW(s.add(a, 5), std::exception);
  EXPECT_THROW(s.add(a, 0, std::vector<float>(4)), std::exception);
}

// The windowed scorer on a real model, one window: the same number as exp(mean NLL) over
// Engine::logits of the whole sequence, and logits(ids, first_row) the tail of logits(ids).
TEST(PerplexityModel, OneWindowEqualsDirectNll) {
  auto engine = Engine::load({.model_path = test_files::default_model_path(), .n_threads = 2, .n_ctx = 128});
  const auto ids = engine->tokenize("It is a truth universally acknowledged, that a single man in possession of a good "
                                    "fortune, must be in want of a wife.",
                                    false);
  const int64_t V = engine->summary().n_vocab, n = static_cast<int64_t>(ids.size());
  const auto all = engine->logits(ids);
  const auto tail = engine->logits(ids, 5);
  ASSERT_EQ(tail.size(), static_cast<size_t>((n - 5) * V));
  for (size_t i = 0; i < tail.size(); ++i) ASSERT_EQ(tail[i], all[5 * V + i]) << i;
  double nll = 0;
  for (int64_t t = 1; t < n; ++t) {
    const float* row = all.data() + (t - 1) * V;
    double z = 0;
    for (int64_t i = 0; i < V; ++i) z += std::exp(double{row[i]});
    nll += std::log(z) - row[ids[t]];
  }
  const auto w = plan_windows(n, n, n, false);
  ASSERT_EQ(w.size(), 1u);
  Scorer s;
  for (int64_t t = w[0].first_scored; t < w[0].end; ++t) s.add(std::span(all).subspan((t - 1) * V, V), ids[t]);
  EXPECT_NEAR(s.mean_nll(), nll / (n - 1), 1e-6);
}

}  // namespace
}  // namespace tern::eval
