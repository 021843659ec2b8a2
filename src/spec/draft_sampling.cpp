#include "spec/draft_sampling.h"

#include <algorithm>

namespace tern::spec {

int32_t DraftSampling::draw(const DraftRequest& r, std::span<float> logits) {
  auto it = samplers_.find(r.seq_id);
  if (it == samplers_.end()) {
    SamplingParams p = *r.sampling;
    p.seed = p.seed * 0x9e3779b97f4a7c15ull + 0x7f4a7c15;  // its own stream, still fixed by the request's seed
    it = samplers_.emplace(r.seq_id, Sampler(p)).first;
  }
  Sampler& s = it->second;
  Draft& d = *r.out;
  // Penalties, when on, look at the last penalty_last_n tokens: the sequence's tail, then the drafts
  // so far.
  history_.clear();
  if (s.uses_history()) {
    const size_t tail = std::min(r.tokens.size(), static_cast<size_t>(r.sampling->penalty_last_n));
    history_.assign(r.tokens.end() - static_cast<std::ptrdiff_t>(tail), r.tokens.end());
    history_.insert(history_.end(), d.tokens.begin(), d.tokens.end());
  }
  const std::span<const TokenProb> q = s.distribution(logits, history_);
  const int32_t token = s.draw(q);
  if (q.size() > 1 || d.sampled) {
    auto slot = [&d](size_t i) -> std::vector<TokenProb>& {
      if (d.q.size() <= i) d.q.resize(i + 1);
      return d.q[i];
    };
    if (!d.sampled)  // earlier deterministic choices become explicit one-hot q
      for (size_t i = 0; i < d.tokens.size(); ++i) slot(i).assign(1, {d.tokens[i], 1.0});
    d.sampled = true;
    slot(d.tokens.size()).assign(q.begin(), q.end());
  }
  d.tokens.push_back(token);
  return token;
}

}  // namespace tern::spec
