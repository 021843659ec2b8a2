#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/argmax.h"
#include "core/error.h"

namespace tern {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

void validate(const SamplingParams& p) {
  TERN_CHECK(std::isfinite(p.temperature) && p.temperature >= 0, "temperature must be >= 0, got {}", p.temperature);
  TERN_CHECK(std::isfinite(p.top_p) && p.top_p > 0 && p.top_p <= 1, "top_p must be in (0, 1], got {}", p.top_p);
  TERN_CHECK(std::isfinite(p.min_p) && p.min_p >= 0 && p.min_p <= 1, "min_p must be in [0, 1], got {}", p.min_p);
  TERN_CHECK(p.top_k >= 0, "top_k must be >= 0, got {}", p.top_k);
  TERN_CHECK(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0,
             "repetition_penalty must be > 0, got {}", p.repetition_penalty);
  TERN_CHECK(std::isfinite(p.presence_penalty) && std::fabs(p.presence_penalty) <= 2,
             "presence_penalty must be in [-2, 2], got {}", p.presence_penalty);
  TERN_CHECK(std::isfinite(p.frequency_penalty) && std::fabs(p.frequency_penalty) <= 2,
             "frequency_penalty must be in [-2, 2], got {}", p.frequency_penalty);
  TERN_CHECK(p.penalty_last_n >= 0, "penalty_last_n must be >= 0, got {}", p.penalty_last_n);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) { validate(params); }

void Sampler::apply_penalties(std::span<float> logits, std::span<const int32_t> history) {
  if (!uses_history()) return;
  const auto& p = params_;
  const size_t n = std::min(history.size(), static_cast<size_t>(p.penalty_last_n));
  // Count occurrences by sorting a copy of the window (a member, so no allocation per token).
  window_.assign(history.end() - static_cast<std::ptrdiff_t>(n), history.end());
  std::sort(window_.begin(), window_.end());
  for (size_t i = 0; i < window_.size();) {
    const int32_t id = window_[i];
    size_t j = i;
    while (j < window_.size() && window_[j] == id) ++j;
    const auto count = static_cast<float>(j - i);
    i = j;
    if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
    float& l = logits[id];
    l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    l -= count * p.frequency_penalty + p.presence_penalty;
  }
}

std::span<const TokenProb> Sampler::distribution(std::span<float> logits, std::span<const int32_t> history) {
  TERN_CHECK(!logits.empty(), "sample: no logits");
  apply_penalties(logits, history);
  const auto& p = params_;
  if (p.temperature <= 0) {  // greedy: the first maximum, so ties resolve the same way everywhere
    dist_.assign(1, {static_cast<int32_t>(argmax(logits)), 1.0});
    return dist_;
  }
  return finish(rank_candidates(logits));
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  TERN_CHECK(!logits.empty(), "sample: no logits");
  if (params_.temperature <= 0) return draw(distribution(logits, history));
  apply_penalties(logits, history);
  return cand_[draw_index(rank_candidates(logits))].id;
}

size_t Sampler::rank_candidates(std::span<const float> logits) {
  const auto& p = params_;
  const size_t n = p.top_k > 0 ? std::min(static_cast<size_t>(p.top_k), logits.size()) : logits.size();
  select_top_k(logits, n, cand_);
  return cut(n);
}

std::span<const TokenProb> Sampler::distribution_top(std::span<const float> values, std::span<const int32_t> ids) {
  TERN_CHECK(!values.empty() && values.size() == ids.size(), "sample: {} values for {} ids", values.size(), ids.size());
  TERN_CHECK(!uses_history(), "sample: penalties need the whole row of logits");
  const auto& p = params_;
  if (p.temperature <= 0) {  // the first of the best: what argmax picks from the whole row
    dist_.assign(1, {ids[0], 1.0});
    return dist_;
  }
  TERN_CHECK(p.top_k > 0 && values.size() >= static_cast<size_t>(p.top_k), "sample: {} candidates for top_k {}",
             values.size(), p.top_k);
  const size_t n = static_cast<size_t>(p.top_k);
  cand_.resize(n);
  for (size_t i = 0; i < n; ++i) cand_[i] = {ids[i], values[i]};
  return finish(cut(n));
}

int Sampler::wants_top_k(int max_k, int64_t n_vocab) const {
  if (uses_history()) return 0;
  if (params_.temperature <= 0) return 1;
  return params_.top_k > 0 && params_.top_k <= max_k && params_.top_k < n_vocab ? params_.top_k : 0;
}

size_t Sampler::cut(size_t n) {
  const auto& p = params_;
  // Softmax over the candidates (at temperature 1, as llama.cpp's top-p and min-p see them).
  probs_.resize(n);
  const double mx = cand_[0].value;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += probs_[i] = std::exp(cand_[i].value - mx);
  if (p.top_p < 1.0f) {
    double cum = 0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cum += probs_[i] / sum;
      if (cum >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
  }
  if (p.min_p > 0.0f) {
    size_t keep = 1;  // probs_[0] is the maximum; min-p keeps tokens with p >= min_p * p_max
    while (keep < n && probs_[keep] >= p.min_p * probs_[0]) ++keep;
    n = keep;
  }
  // Temperature, renormalised over the survivors (at temperature 1, OpenAI's default, the values
  // above already are exp((v - mx) / 1)).
  probs_.resize(n);
  sum = 0;
  if (p.temperature == 1.0f) {
    for (size_t i = 0; i < n; ++i) sum += probs_[i];
  } else {
    for (size_t i = 0; i < n; ++i) sum += probs_[i] = std::exp((cand_[i].value - mx) / p.temperature);
  }
  for (double& q : probs_) q /= sum;
  return n;
}

std::span<const TokenProb> Sampler::finish(size_t n) {
  dist_.resize(n);
  for (size_t i = 0; i < n; ++i) dist_[i] = {cand_[i].id, probs_[i]};
  return dist_;
}

namespace {
// The index a uniform number picks from n probabilities p(0), p(1), ... walked in order (none drawn
// for a single one).
template <class P>
size_t draw_from(Rng& rng, size_t n, P p) {
  TERN_CHECK(n > 0, "sample: empty distribution");
  if (n == 1) return 0;
  double r = rng.uniform();
  for (size_t i = 0; i < n; ++i) {
    r -= p(i);
    if (r < 0) return i;
  }
  return n - 1;  // rounding left r >= 0 after the last token
}
}  // namespace

size_t Sampler::draw_index(size_t n) {
  return draw_from(rng_, n, [&](size_t i) { return probs_[i]; });
}

int32_t Sampler::draw(std::span<const TokenProb> dist) {
  return dist[draw_from(rng_, dist.size(), [&](size_t i) { return dist[i].p; })].id;
}

}  // namespace tern
