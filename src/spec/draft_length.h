// How many tokens to draft for a sequence next. With per-token acceptance rate a, drafting k tokens
// yields (1 - a^(k+1)) / (1 - a) tokens per verifying pass (Leviathan et al. 2023) and costs
// 1 + c k decode steps, where c is what one more token costs the verifying pass plus what drafting
// it costs. The k that maximises their ratio is chosen from a running estimate of a; when no k
// beats plain decoding, the sequence stops speculating but probes with one token now and then, so
// that it notices when the text becomes predictable again (less often after each failed probe).
//
// Acceptance comes in runs: while the output copies its input every draft is kept, and where it
// departs from it most are rejected. So a is estimated twice, after a pass that kept every draft
// and after one that rejected some, and the estimate for the state the sequence is in decides.
#pragma once

#include <cstdint>

namespace tern::spec {

class DraftLength {
 public:
  // `k_max`: the most tokens drafted; `cost`: c above; `adaptive` false: always k_max.
  DraftLength(int32_t k_max, double cost, bool adaptive);
  int32_t next();
  // `drafted` tokens were verified and the first `accepted` kept.
  void observe(int32_t drafted, int32_t accepted);
  double acceptance() const { return accepted_[after_full_] / trials_[after_full_]; }

 private:
  int32_t k_max_;
  double cost_;
  bool adaptive_;
  // Per state (0: the last pass rejected a draft, 1: it kept them all), exponentially weighted
  // counts of kept drafts and of trials (kept drafts plus rejections), with a prior of 3 in 4 kept.
  double accepted_[2] = {3, 3}, trials_[2] = {4, 4};
  int after_full_ = 1;
  int32_t idle_ = 0;          // calls since the last probe while not speculating
  int32_t probe_every_ = 8;   // doubles after each rejected probe, up to 64
  bool probing_ = false;
};

// Expected tokens per verifying pass when drafting k with per-token acceptance a.
double expected_tokens(double a, int32_t k);

}  // namespace tern::spec
