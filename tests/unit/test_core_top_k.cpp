// select_top_k and rank_all against a plain sort by the sampling order (larger value first, then
// smaller index; NaN as -inf; -0 equal to +0): rows short and long (the radix path), with many ties,
// infinities, NaN and signed zeros, k from 1 to the whole row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/top_k.h"

namespace {

using tern::ScoredId;

std::vector<ScoredId> reference(const std::vector<float>& x) {
  std::vector<ScoredId> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = {static_cast<int32_t>(i), std::isnan(x[i]) ? -INFINITY : x[i]};
  std::stable_sort(r.begin(), r.end(), [](const ScoredId& a, const ScoredId& b) { return a.value > b.value; });
  return r;
}

std::vector<float> row(size_t n, std::mt19937& rng, int kind) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    float v = std::normal_distribution<float>(0.0f, 5.0f)(rng);
    if (kind == 1) v = std::round(v);  // ties everywhere
    if (kind == 2 && i % 3 == 0) v = -INFINITY;
    if (i % 101 == 0) v = std::nanf("");
    if (i % 103 == 0) v = i % 2 ? -0.0f : 0.0f;
    if (i % 997 == 0) v = INFINITY;
    x[i] = v;
  }
  return x;
}

void expect_prefix(const std::vector<ScoredId>& got, const std::vector<ScoredId>& want, size_t k, const char* what) {
  for (size_t i = 0; i < k; ++i) {
    ASSERT_EQ(got[i].id, want[i].id) << what << " rank " << i << " of " << want.size();
    ASSERT_EQ(std::memcmp(&got[i].value, &want[i].value, 4), 0) << what << " rank " << i;
  }
}

TEST(TopK, SelectAndRankAllFollowTheSamplingOrder) {
  std::mt19937 rng(17);
  std::vector<ScoredId> work;
  for (size_t n : {1, 7, 1000, 4096, 32000, 49152}) {
    for (int kind = 0; kind < 3; ++kind) {
      const auto x = row(n, rng, kind);
      const auto want = reference(x);
      for (size_t k : {size_t{1}, size_t{40}, n / 8, n / 2, n}) {
        if (k == 0 || k > n) continue;
        tern::select_top_k(x, k, work);
        expect_prefix(work, want, k, "select_top_k");
      }
      tern::rank_all(x, work);
      ASSERT_EQ(work.size(), n);
      expect_prefix(work, want, n, "rank_all");
    }
  }
}

}  // namespace
