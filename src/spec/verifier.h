// Speculative sampling's acceptance rule (Leviathan et al. 2023; Chen et al. 2023): a draft token x,
// drawn from the proposer's distribution q, is kept with probability min(1, p(x) / q(x)) under the
// target's distribution p; at the first rejected position the token is drawn instead from the
// residual max(0, p - q), renormalised. Tokens produced this way follow p exactly, whatever q is.
// A deterministic proposer (n-gram lookup, a greedy draft) has q one-hot at its token: it is kept
// with probability p(x) and a rejection draws from p without x. With greedy sampling p is one-hot
// too, so a draft is kept exactly when it is the target's argmax.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "sampling/sampler.h"

namespace tern::spec {

class Verifier {
 public:
  explicit Verifier(int64_t n_vocab);
  // Whether `draft` is kept. `q` empty means one-hot at `draft`. Draws from `rng` only when
  // p(draft) < q(draft).
  bool accept(std::span<const TokenProb> p, std::span<const TokenProb> q, int32_t draft, Sampler& rng);
  // The token for a rejected position: a draw from max(0, p - q) normalised (q empty: one-hot at
  // `draft`).
  int32_t resample(std::span<const TokenProb> p, std::span<const TokenProb> q, int32_t draft, Sampler& rng);

 private:
  std::vector<double> q_dense_;  // q by token id; zero outside q's support between calls
  std::vector<TokenProb> residual_;
};

}  // namespace tern::spec
