#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/top_k.h"
#include "sampling/sampler.h"
#include "engine/stop_matcher.h"

using namespace tern;

namespace {
std::vector<float> logits_of(std::initializer_list<float> l) { return std::vector<float>(l); }
}  // namespace

TEST(Sampler, GreedyPicksFirstMaximum) {
  Sampler s({.temperature = 0});
  auto l = logits_of({0.1f, 3.0f, 3.0f, -1.0f});
  EXPECT_EQ(s.sample(l, {}), 1);
}

TEST(Sampler, SameSeedSameTokens) {
  auto run = [](uint64_t seed) {
    Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = seed});
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) {
      auto l = logits_of({0.0f, 0.5f, 1.0f, 1.5f, 2.0f});
      out.push_back(s.sample(l, {}));
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampler, FollowsSoftmaxAtTemperatureOne) {
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 1});
  std::map<int, int> counts;
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    auto l = logits_of({0.0f, std::log(2.0f), std::log(5.0f)});
    ++counts[s.sample(l, {})];
  }
  EXPECT_NEAR(counts[0] / double(n), 0.125, 0.01);
  EXPECT_NEAR(counts[1] / double(n), 0.25, 0.01);
  EXPECT_NEAR(counts[2] / double(n), 0.625, 0.01);
}

TEST(Sampler, TopKTopPMinPRestrictTheSupport) {
  auto support = [](SamplingParams p) {
    Sampler s(p);
    std::map<int, int> seen;
    for (int i = 0; i < 3000; ++i) {
      auto l = logits_of({std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)});
      ++seen[s.sample(l, {})];
    }
    return seen.size();
  };
  EXPECT_EQ(support({.temperature = 1, .top_k = 2, .top_p = 1, .min_p = 0}), 2u);
  EXPECT_EQ(support({.temperature = 1, .top_k = 0, .top_p = 0.79f, .min_p = 0}), 2u);  // 0.5 + 0.3 >= 0.79
  EXPECT_EQ(support({.temperature = 1, .top_k = 0, .top_p = 1, .min_p = 0.25f}), 3u);  // p >= 0.125
  EXPECT_EQ(support({.temperature = 1, .top_k = 0, .top_p = 1, .min_p = 0}), 4u);
}

// A row's best logits (core/top_k.h) give the distribution, and the draws, that the whole row
// gives: rows with ties (quantised logits), -inf, NaN and signed zeros; greedy and top-k with or
// without top-p and min-p; more candidates than top_k too.
TEST(Sampler, BestLogitsGiveTheWholeRowsDistribution) {
  std::mt19937 rng(5);
  const std::vector<SamplingParams> params = {
      {.temperature = 0},
      {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .seed = 3},
      {.temperature = 1.3f, .top_k = 7, .top_p = 1.0f, .min_p = 0.0f, .seed = 4},
      {.temperature = 0.5f, .top_k = 1, .seed = 5},
      {.temperature = 1.0f, .top_k = 256, .top_p = 0.5f, .min_p = 0.0f, .seed = 6}};
  for (const SamplingParams& p : params) {
    Sampler whole(p), best(p);
    std::vector<ScoredId> work;
    for (int row = 0; row < 50; ++row) {
      std::vector<float> l(1000);
      for (float& x : l) x = std::round(std::normal_distribution<float>(0.0f, 3.0f)(rng) * 2.0f) / 2.0f;  // ties
      l[row % 1000] = -INFINITY;
      l[(row * 7) % 1000] = std::nanf("");
      l[(row * 13) % 1000] = -0.0f;
      l[(row * 17 + 1) % 1000] = 0.0f;
      const int k = best.wants_top_k(256, 1000);
      ASSERT_GT(k, 0);
      const size_t n = static_cast<size_t>(std::min(256, k + row % 3 * 5));  // sometimes more than needed
      select_top_k(l, n, work);
      std::vector<float> values;
      std::vector<int32_t> ids;
      for (size_t i = 0; i < n; ++i) values.push_back(work[i].value), ids.push_back(work[i].id);
      const auto db = best.distribution_top(values, ids);
      const std::vector<TokenProb> from_best(db.begin(), db.end());
      const auto dw = whole.distribution(l, {});
      ASSERT_EQ(dw.size(), from_best.size()) << "row " << row;
      for (size_t i = 0; i < dw.size(); ++i) {
        EXPECT_EQ(dw[i].id, from_best[i].id) << "row " << row;
        EXPECT_EQ(dw[i].p, from_best[i].p) << "row " << row;
      }
      EXPECT_EQ(whole.draw(dw), best.draw(from_best)) << "row " << row;
    }
  }
  // Penalties need the whole row; so do top_k off and top_k beyond the candidates there are.
  EXPECT_EQ(Sampler({.top_k = 40, .repetition_penalty = 1.1f}).wants_top_k(256, 1000), 0);
  EXPECT_EQ(Sampler({.top_k = 0}).wants_top_k(256, 1000), 0);
  EXPECT_EQ(Sampler({.top_k = 300}).wants_top_k(256, 1000), 0);
  EXPECT_EQ(Sampler({.top_k = 40}).wants_top_k(256, 40), 0);
  EXPECT_EQ(Sampler({.temperature = 0, .repetition_penalty = 1.1f}).wants_top_k(256, 1000), 0);
  EXPECT_EQ(Sampler({.temperature = 0, .top_k = 0}).wants_top_k(256, 1000), 1);
}

// sample() is draw(distribution()): the same tokens and the same random stream, also where it
// takes its shortcut (every token a candidate: values sorted by radix, the drawn id looked up).
TEST(Sampler, SampleIsDrawOfTheDistribution) {
  std::mt19937 rng(9);
  const std::vector<SamplingParams> params = {
      {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 1},
      {.temperature = 0.7f, .top_k = 0, .top_p = 0.9f, .min_p = 0.0f, .seed = 2},
      {.temperature = 1.5f, .top_k = 0, .top_p = 1.0f, .min_p = 0.1f, .seed = 3},
      {.temperature = 1.0f, .top_k = 5000, .top_p = 0.99f, .min_p = 0.01f, .seed = 4},  // top_k beyond the row
      {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .seed = 5},
      {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .repetition_penalty = 1.3f,
       .presence_penalty = 0.5f, .seed = 6}};
  for (const SamplingParams& p : params) {
    Sampler fast(p), slow(p);
    std::vector<int32_t> history;
    for (int row = 0; row < 300; ++row) {
      std::vector<float> l(1000);
      const float spread = row % 3 == 0 ? 0.3f : 4.0f;  // flat rows: the draw walks far
      for (float& x : l) x = std::round(std::normal_distribution<float>(0.0f, spread)(rng) * 8.0f) / 8.0f;
      if (row % 4 == 0) l[row % 1000] = std::nanf("");
      if (row % 5 == 0) l[(row * 7) % 1000] = -INFINITY;
      l[(row * 13) % 1000] = -0.0f;
      std::vector<float> a = l, b = l;
      const int32_t t = fast.sample(a, history);
      const int32_t u = slow.draw(slow.distribution(b, history));
      ASSERT_EQ(t, u) << "row " << row << " temperature " << p.temperature << " top_k " << p.top_k;
      history.push_back(t);
    }
  }
}

TEST(Sampler, Penalties) {
  Sampler s({.temperature = 0, .repetition_penalty = 2.0f, .presence_penalty = 0.5f, .frequency_penalty = 0.25f});
  auto l = logits_of({2.0f, 1.9f, -1.0f});
  const int32_t hist[] = {0, 0, 2};
  EXPECT_EQ(s.sample(l, hist), 1);
  EXPECT_FLOAT_EQ(l[0], 2.0f / 2 - 0.5f - 0.5f);
  EXPECT_FLOAT_EQ(l[2], -2.0f - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(l[1], 1.9f);
}

TEST(Sampler, InvalidParametersNamed) {
  try {
    Sampler s({.top_p = 1.5f});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("top_p"), std::string::npos);
  }
  EXPECT_THROW(Sampler({.temperature = -1}), Error);
  EXPECT_THROW(Sampler({.min_p = NAN}), Error);
}

TEST(StopMatcher, HoldsBackPossiblePrefixes) {
  StopMatcher m({"###", "\nUser:"});
  EXPECT_EQ(m.push("Hello #"), "Hello ");
  EXPECT_EQ(m.push("# x"), "## x");
  EXPECT_EQ(m.push("\nUse"), "");
  EXPECT_EQ(m.push("r: more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, FlushReleasesTail) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("the E"), "the ");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.flush(), "E");
}
