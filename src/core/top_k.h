// The k largest of a row of logits with their indices, in the order sampling ranks candidates:
// larger value first, equal values by smaller index (so that every backend, and the sampler
// itself, picks the same k). NaN ranks as -inf. core/argmax.h is the k = 1 case (the first
// maximum; NaN never picked) with less work.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace tern {

struct ScoredId {
  int32_t id;
  float value;
};

// Larger value first, then smaller id.
inline bool ranks_before(const ScoredId& a, const ScoredId& b) {
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}

// work[0, k) becomes the k best of x, in rank order (the rest of work is in no order). k <= x.size().
inline void select_top_k(std::span<const float> x, size_t k, std::vector<ScoredId>& work) {
  work.resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) work[i] = {static_cast<int32_t>(i), std::isnan(x[i]) ? -INFINITY : x[i]};
  if (k < work.size()) std::partial_sort(work.begin(), work.begin() + static_cast<std::ptrdiff_t>(k), work.end(), ranks_before);
  else std::sort(work.begin(), work.end(), ranks_before);
}

}  // namespace tern
