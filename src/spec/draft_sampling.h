// How a model-based proposer picks its tokens: with the request's own sampling parameters (so q is
// close to the target's p and many drafts are kept), from its own seeded stream per sequence, and
// keeping each token's distribution when the choice was random (the verifier needs q).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "sampling/sampler.h"
#include "spec/proposer.h"

namespace tern::spec {

class DraftSampling {
 public:
  // Draws the next draft token for `r` from `logits` (modified in place) and appends it, with its
  // distribution when sampled, to r.out.
  int32_t draw(const DraftRequest& r, std::span<float> logits);
  void release(uint64_t seq_id) { samplers_.erase(seq_id); }

 private:
  std::unordered_map<uint64_t, Sampler> samplers_;
  std::vector<int32_t> history_;  // the penalty window: the sequence's tail, then the drafts so far
};

}  // namespace tern::spec
