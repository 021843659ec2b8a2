// Token sampling: penalties, then top-k, top-p, min-p, temperature and a seeded draw (llama.cpp's
// order). Same seed and same logits give the same token on every platform.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

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

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks a token from `logits` given the tokens generated or seen so far (for penalties).
  // `logits` is modified (penalties applied in place).
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);
  const SamplingParams& params() const { return params_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };
  void apply_penalties(std::span<float> logits, std::span<const int32_t> history);

  SamplingParams params_;
  Rng rng_;
  std::vector<Candidate> cand_;  // reused across calls
  std::vector<double> probs_;
  std::vector<int32_t> window_;  // the penalty window, sorted to count repeats
};

// Validates parameters, naming the one at fault.
void validate(const SamplingParams& p);

}  // namespace tern
