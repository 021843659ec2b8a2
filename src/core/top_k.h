// The k largest of a row of logits with their indices, in the order sampling ranks candidates:
// larger value first, equal values by smaller index (so that every backend, and the sampler
// itself, picks the same k). NaN ranks as -inf; -0 and +0 are equal values. core/argmax.h is the
// k = 1 case (the first maximum; NaN never picked) with less work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace tern {

struct ScoredId {
  int32_t id;
  float value;  // the logit, NaN as -inf
};

// Larger value first, then smaller id.
inline bool ranks_before(const ScoredId& a, const ScoredId& b) {
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}

// work[0, k) becomes the k best of x, in rank order (the rest of work is in no order). k <= x.size().
// Small k: a partial sort; k near x.size(): rank_all.
void select_top_k(std::span<const float> x, size_t k, std::vector<ScoredId>& work);

// Every entry of x in rank order, by a stable radix sort of the values' order-preserving keys
// (index order breaks ties): O(n), where sorting pairs by comparison costs n log n.
void rank_all(std::span<const float> x, std::vector<ScoredId>& out);

}  // namespace tern
