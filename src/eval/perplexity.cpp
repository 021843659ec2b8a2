#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include "core/argmax.h"
#include "core/error.h"

namespace tern::eval {

std::vector<Window> plan_windows(int64_t n_tokens, int64_t ctx, int64_t stride, bool with_bos) {
  TERN_CHECK(ctx >= (with_bos ? 1 : 2), "perplexity context of {} tokens is too short", ctx);
  TERN_CHECK(stride >= 1 && stride <= ctx, "perplexity stride {} must be in 1..{} (the context)", stride, ctx);
  std::vector<Window> out;
  int64_t scored_to = with_bos ? 0 : 1;  // tokens before this one are scored already (or cannot be)
  for (int64_t begin = 0; scored_to < n_tokens;) {
    const int64_t end = std::min(n_tokens, begin + ctx);
    out.push_back({begin, end, scored_to});
    scored_to = end;
    // Without a BOS a window's first token has nothing to be predicted from, so the next window
    // starts at least one token before the first it scores.
    begin = with_bos ? begin + stride : std::min(begin + stride, scored_to - 1);
  }
  return out;
}

namespace {

struct LogSoftmax {
  double max = 0, log_z = 0;  // log of the normaliser, max included
  int64_t argmax = 0;
};

LogSoftmax log_softmax(std::span<const float> x) {
  LogSoftmax r;
  r.argmax = tern::argmax(x);
  r.max = x[r.argmax];
  double sum = 0;
  for (float v : x) sum += std::exp(static_cast<double>(v) - r.max);
  r.log_z = r.max + std::log(sum);
  return r;
}

}  // namespace

void Scorer::add(std::span<const float> logits, int32_t target, std::span<const float> base_logits) {
  TERN_CHECK(!logits.empty() && target >= 0 && static_cast<size_t>(target) < logits.size(),
             "scored token {} outside a vocabulary of {}", target, logits.size());
  const LogSoftmax q = log_softmax(logits);
  const double nll = q.log_z - logits[target];
  nll_ += nll;
  nll2_ += nll * nll;
  ++n_;
  if (base_logits.empty()) return;
  TERN_CHECK(base_logits.size() == logits.size(), "base model's vocabulary ({}) differs from the model's ({})",
             base_logits.size(), logits.size());
  const LogSoftmax p = log_softmax(base_logits);
  // KL(p || q) = sum p_i (log p_i - log q_i), with log p_i = b_i - log_z_p and log q_i = l_i - log_z_q.
  double kl = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double lp = base_logits[i] - p.log_z;
    kl += std::exp(lp) * (lp - (logits[i] - q.log_z));
  }
  kl = std::max(0.0, kl);  // rounding can leave a tiny negative for identical distributions
  kl_ += kl;
  kl2_ += kl * kl;
  base_nll_ += p.log_z - base_logits[target];
  same_top1_ += p.argmax == q.argmax;
  ++n_base_;
}

double Scorer::perplexity() const { return std::exp(mean_nll()); }

double Scorer::base_perplexity() const { return n_base_ ? std::exp(base_nll_ / n_base_) : 0; }

double Scorer::stderr_of(double sum, double sum2, int64_t n) {
  if (n < 2) return 0;
  const double mean = sum / n, var = std::max(0.0, (sum2 / n - mean * mean) * n / (n - 1));
  return std::sqrt(var / n);
}

}  // namespace tern::eval
