#include "engine/logprobs.h"

#include <algorithm>
#include <cmath>

namespace tern {

float token_logprobs(std::span<const float> logits, int32_t chosen, int n_top, std::vector<TokenLogprob>& top) {
  float mx = -INFINITY;
  for (float x : logits) mx = std::max(mx, x);
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - mx);
  const double log_z = mx + std::log(sum);
  auto lp = [&](int32_t id) { return static_cast<float>(logits[static_cast<size_t>(id)] - log_z); };
  top.clear();
  if (n_top > 0) {
    const size_t k = std::min<size_t>(static_cast<size_t>(n_top), logits.size());
    // A bounded selection: keep the k best seen so far, sorted.
    auto better = [&](int32_t a, int32_t b) {
      return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
             (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
    };
    std::vector<int32_t> best;
    best.reserve(k + 1);
    for (int32_t i = 0; i < static_cast<int32_t>(logits.size()); ++i) {
      if (best.size() == k && !better(i, best.back())) continue;
      best.insert(std::upper_bound(best.begin(), best.end(), i, better), i);
      if (best.size() > k) best.pop_back();
    }
    for (int32_t id : best) top.push_back({id, lp(id)});
  }
  return lp(chosen);
}

}  // namespace tern
