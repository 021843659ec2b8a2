#include "spec/verifier.h"

#include "core/error.h"

namespace tern::spec {

namespace {
// p(token), 0 outside the support.
double prob_of(std::span<const TokenProb> d, int32_t token) {
  for (const TokenProb& t : d)
    if (t.id == token) return t.p;
  return 0;
}
}  // namespace

Verifier::Verifier(int64_t n_vocab) : q_dense_(static_cast<size_t>(n_vocab), 0.0) {}

bool Verifier::accept(std::span<const TokenProb> p, std::span<const TokenProb> q, int32_t draft, Sampler& rng) {
  const double pd = prob_of(p, draft);
  const double qd = q.empty() ? 1.0 : prob_of(q, draft);
  if (pd <= 0) return false;
  if (pd >= qd) return true;
  return rng.uniform() * qd < pd;
}

int32_t Verifier::resample(std::span<const TokenProb> p, std::span<const TokenProb> q, int32_t draft, Sampler& rng) {
  TERN_CHECK(!p.empty(), "speculative verification: empty target distribution");
  auto set_q = [&](double sign) {
    if (q.empty()) {
      TERN_CHECK(draft >= 0 && static_cast<size_t>(draft) < q_dense_.size(), "draft token {} outside the vocabulary",
                 draft);
      q_dense_[static_cast<size_t>(draft)] = sign > 0 ? 1.0 : 0.0;
      return;
    }
    for (const TokenProb& t : q) {
      TERN_CHECK(t.id >= 0 && static_cast<size_t>(t.id) < q_dense_.size(), "draft token {} outside the vocabulary",
                 t.id);
      q_dense_[static_cast<size_t>(t.id)] = sign > 0 ? t.p : 0.0;
    }
  };
  set_q(1);
  residual_.clear();
  double sum = 0;
  for (const TokenProb& t : p) {
    const double r = t.p - q_dense_[static_cast<size_t>(t.id)];
    if (r > 0) {
      residual_.push_back({t.id, r});
      sum += r;
    }
  }
  set_q(-1);
  // p <= q everywhere happens only when p == q, where every draft is accepted; rounding aside, fall
  // back to p itself.
  if (residual_.empty() || !(sum > 0)) return rng.draw(p);
  for (TokenProb& t : residual_) t.p /= sum;
  return rng.draw(residual_);
}

}  // namespace tern::spec
