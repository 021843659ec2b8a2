// Token sampling: penalties, then top-k, top-p, min-p, temperature and a seeded draw (llama.cpp's
// order). Same seed and same logits give the same token on every platform.
//
// The distribution a token is drawn from is available on its own (distribution()), so that
// speculative decoding can compare a draft's distribution with the target's and accept or resample
// exactly (src/spec/verifier.h).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/top_k.h"
#include "tern/sampling.h"

namespace tern {

// splitmix64-seeded xoshiro256**: fully specified, unlike std:: distributions.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1)

 private:
  uint64_t s_[4];
};

// A token with its probability under a sampler's distribution.
struct TokenProb {
  int32_t id;
  double p;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks a token from `logits` given the tokens generated or seen so far (for penalties):
  // draw(distribution(logits, history)), the same token from the same random numbers, without
  // building the distribution's list. `logits` is modified (penalties applied in place).
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);
  // The distribution sample() draws from: the tokens that survive penalties, top-k, top-p and
  // min-p, with their temperature-scaled probabilities (summing to 1), most likely first. Greedy
  // sampling's is the first maximum with probability 1. Valid until the next call; `logits` is
  // modified as by sample().
  std::span<const TokenProb> distribution(std::span<float> logits, std::span<const int32_t> history);
  // The same distribution from a row's best logits alone (values and their ids in rank order,
  // core/top_k.h), as a GPU returns them: enough when no penalty is on (uses_history() false) and
  // they are at least the top_k best (any number for greedy sampling). wants_top_k() says how many.
  std::span<const TokenProb> distribution_top(std::span<const float> values, std::span<const int32_t> ids);
  // How many of a row's best logits distribution_top needs (1 for greedy sampling), or 0 when it
  // needs the whole row (a penalty is on, or top_k is off or beyond max_k or the vocabulary).
  int wants_top_k(int max_k, int64_t n_vocab) const;
  // A token drawn from `dist` (one uniform number, none when it has a single token).
  int32_t draw(std::span<const TokenProb> dist);
  // The sampler's own random stream, for decisions that must be seeded with the request (accepting
  // a speculative token).
  double uniform() { return rng_.uniform(); }
  const SamplingParams& params() const { return params_; }
  // Whether the history passed in changes anything (a penalty is on); callers that must assemble
  // one can skip it otherwise.
  bool uses_history() const {
    return params_.penalty_last_n > 0 &&
           (params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f);
  }

 private:
  void apply_penalties(std::span<float> logits, std::span<const int32_t> history);
  // The top-k candidates (every token when top_k is off) into cand_ in rank order, then cut():
  // returns how many survive.
  size_t rank_candidates(std::span<const float> logits);
  // top-p, min-p and temperature over cand_[0, n), in rank order: leaves the survivors'
  // probabilities in probs_ and returns how many survive.
  size_t cut(size_t n);
  // dist_ from cand_'s ids and probs_ (n survivors).
  std::span<const TokenProb> finish(size_t n);
  // The index in probs_ of the token a uniform number picks (none drawn for a single survivor).
  size_t draw_index(size_t n);

  SamplingParams params_;
  Rng rng_;
  std::vector<ScoredId> cand_;  // reused across calls
  std::vector<double> probs_;
  std::vector<TokenProb> dist_;
  std::vector<int32_t> window_;  // the penalty window, sorted to count repeats
};

// Validates parameters, naming the one at fault.
void validate(const SamplingParams& p);

}  // namespace tern
