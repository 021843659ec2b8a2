// Perplexity over sliding windows, and how far one model's next-token distributions are from a base
// model's (KL divergence, top-1 agreement): the numbers that judge a quantised or pruned file.
//
// The text is cut into windows of `ctx` tokens that start `stride` tokens apart. Every token after the
// first is scored exactly once, in the first window that reaches it, so each one (outside the first
// window) is predicted from at least ctx - stride tokens of context: the sliding-window evaluation of
// Hugging Face's perplexity guide. stride == ctx gives llama.cpp-like disjoint chunks that score all
// their tokens (without a BOS, consecutive windows then overlap by one token, the one that predicts
// the next window's first); a small stride gives more context per token at more compute.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tern::eval {

struct Window {
  int64_t begin = 0, end = 0;  // text tokens [begin, end) run through the model
  int64_t first_scored = 0;    // tokens [first_scored, end) are scored; begin < first_scored unless a BOS leads
};

// Windows over n_tokens text tokens. `ctx` counts text tokens only (a BOS the caller puts in front of
// each window is extra); with_bos: the first text token is predicted from the BOS, so it is scored too.
// Throws unless 1 <= stride <= ctx and ctx >= 2 (1 with a BOS).
std::vector<Window> plan_windows(int64_t n_tokens, int64_t ctx, int64_t stride, bool with_bos);

// Running sums over scored tokens: negative log-likelihood and, against a base model, KL(base || model)
// and whether both put the same token first. Sums are in double, so the order rows arrive in does not
// matter beyond the last bits.
class Scorer {
 public:
  // One scored position: the model's logits (n_vocab) and the token that came next; base_logits, when
  // not empty, the base model's logits at the same position.
  void add(std::span<const float> logits, int32_t target, std::span<const float> base_logits = {});

  int64_t count() const { return n_; }
  double mean_nll() const { return n_ ? nll_ / n_ : 0; }
  double perplexity() const;
  // Standard error of mean_nll (perplexity's ± is exp(mean) * this, to first order).
  double nll_stderr() const { return stderr_of(nll_, nll2_, n_); }
  double base_perplexity() const;
  bool has_base() const { return n_base_ > 0; }
  double mean_kl() const { return n_base_ ? kl_ / n_base_ : 0; }
  double kl_stderr() const { return stderr_of(kl_, kl2_, n_base_); }
  double top1_agreement() const { return n_base_ ? static_cast<double>(same_top1_) / n_base_ : 0; }

 private:
  static double stderr_of(double sum, double sum2, int64_t n);
  int64_t n_ = 0, n_base_ = 0, same_top1_ = 0;
  double nll_ = 0, nll2_ = 0, base_nll_ = 0, kl_ = 0, kl2_ = 0;
};

}  // namespace tern::eval
