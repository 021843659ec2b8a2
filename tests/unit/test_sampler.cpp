#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"
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
