#include "spec/draft_length.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace tern::spec {

namespace {
constexpr double kDecay = 0.9;     // weight of the past per observation
constexpr int32_t kProbeFirst = 8, kProbeLast = 64;  // steps between single-token probes while not speculating
}  // namespace

double expected_tokens(double a, int32_t k) {
  if (a >= 1) return k + 1.0;
  return (1 - std::pow(a, k + 1)) / (1 - a);
}

DraftLength::DraftLength(int32_t k_max, double cost, bool adaptive) : k_max_(k_max), cost_(cost), adaptive_(adaptive) {
  TERN_CHECK(k_max >= 0 && k_max <= 64, "speculative k must be in 0..64, got {}", k_max);
  TERN_CHECK(std::isfinite(cost) && cost >= 0, "speculative cost {}", cost);
}

int32_t DraftLength::next() {
  // A probe handed out last step was observed then, or never ran (no slot, no draft): either way it
  // is over.
  probing_ = false;
  if (!adaptive_ || k_max_ == 0) return k_max_;
  const double a = acceptance();
  int32_t best = 0;
  double best_rate = 1.0;  // plain decoding: one token per step
  for (int32_t k = 1; k <= k_max_; ++k) {
    const double rate = expected_tokens(a, k) / (1 + cost_ * k);
    if (rate > best_rate) best = k, best_rate = rate;
  }
  if (best > 0) {
    idle_ = 0;
    probe_every_ = kProbeFirst;
    return best;
  }
  if (++idle_ < probe_every_) return 0;
  idle_ = 0;
  probing_ = true;
  return 1;
}

void DraftLength::observe(int32_t drafted, int32_t accepted) {
  if (drafted <= 0) return;
  if (probing_) probe_every_ = accepted > 0 ? kProbeFirst : std::min(kProbeLast, 2 * probe_every_);
  probing_ = false;
  double& kept = accepted_[after_full_];
  double& trials = trials_[after_full_];
  kept = kept * kDecay + accepted;
  trials = trials * kDecay + accepted + (accepted < drafted ? 1 : 0);
  after_full_ = accepted == drafted ? 1 : 0;
}

}  // namespace tern::spec
