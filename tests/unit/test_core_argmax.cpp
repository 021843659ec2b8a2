// tern::argmax against std::max_element: random arrays of every length around the lane count,
// ties (the first one wins, wherever it falls: any lane, the tail), -inf, and NaN never picked.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/argmax.h"

namespace {

int64_t reference(const std::vector<float>& x) {
  return static_cast<int64_t>(std::max_element(x.begin(), x.end()) - x.begin());
}

TEST(Argmax, MatchesMaxElementOnRandomArrays) {
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (size_t n = 1; n <= 70; ++n) {
    for (int rep = 0; rep < 20; ++rep) {
      std::vector<float> x(n);
      for (auto& v : x) v = d(rng);
      ASSERT_EQ(tern::argmax(x), reference(x)) << "n " << n;
    }
  }
  std::vector<float> vocab(32000);
  for (auto& v : vocab) v = d(rng);
  EXPECT_EQ(tern::argmax(vocab), reference(vocab));
}

TEST(Argmax, FirstOfEqualMaximaWins) {
  std::mt19937 rng(6);
  for (size_t n : {1, 7, 8, 9, 16, 17, 31, 33, 100}) {
    for (size_t a = 0; a < n; ++a) {
      for (size_t b = a; b < n; ++b) {
        std::vector<float> x(n);
        for (auto& v : x) v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
        x[a] = x[b] = 2.0f;  // a <= b: the first is a
        ASSERT_EQ(tern::argmax(x), static_cast<int64_t>(a)) << "n " << n << " maxima at " << a << ", " << b;
      }
    }
  }
  // Small integers: many ties at once.
  std::vector<float> x(1000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919) % 13);
  EXPECT_EQ(tern::argmax(x), reference(x));
}

TEST(Argmax, InfinitiesAndNaN) {
  EXPECT_EQ(tern::argmax(std::vector<float>(20, -INFINITY)), 0);
  std::vector<float> x(20, -INFINITY);
  x[13] = -1e30f;
  EXPECT_EQ(tern::argmax(x), 13);
  x[17] = INFINITY;
  EXPECT_EQ(tern::argmax(x), 17);
  std::vector<float> y(19, 0.5f);
  y[0] = std::nanf("");
  y[4] = std::nanf("");
  y[11] = 0.75f;
  EXPECT_EQ(tern::argmax(y), 11);
}

}  // namespace
