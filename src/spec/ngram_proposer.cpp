// Prompt lookup decoding (Saxena 2023), the n-gram proposer of vLLM and llama.cpp: find the most
// recent earlier occurrence of the sequence's last n tokens and propose what followed it. Costs no
// model pass; pays off wherever the output copies its input (summaries, edits, code, quotes).
#include <algorithm>

#include "core/error.h"
#include "spec/proposer.h"

namespace tern::spec {
namespace {

class NgramProposer final : public Proposer {
 public:
  explicit NgramProposer(const NgramConfig& c) : config_(c) {
    TERN_CHECK(c.min_ngram >= 1 && c.max_ngram >= c.min_ngram && c.max_ngram <= 64,
               "n-gram proposer: n-gram lengths {}..{} (need 1 <= min <= max <= 64)", c.min_ngram, c.max_ngram);
  }
  std::string_view name() const override { return "ngram"; }
  double draft_cost() const override { return 0; }

  void propose(std::span<const DraftRequest> requests) override {
    for (const DraftRequest& r : requests) {
      r.out->clear();
      if (r.max_tokens > 0) lookup(r.tokens, static_cast<size_t>(r.max_tokens), r.out->tokens);
    }
  }

 private:
  void lookup(std::span<const int32_t> t, size_t max_tokens, std::vector<int32_t>& out) const {
    const size_t len = t.size();
    for (size_t n = static_cast<size_t>(config_.max_ngram); n >= static_cast<size_t>(config_.min_ngram); --n) {
      if (len < n + 1) continue;
      const std::span<const int32_t> suffix = t.subspan(len - n);
      // Most recent occurrence first: it is the likeliest to continue the same way.
      for (size_t j = len - n; j-- > 0;) {
        if (!std::equal(suffix.begin(), suffix.end(), t.begin() + static_cast<std::ptrdiff_t>(j))) continue;
        const size_t from = j + n, to = std::min(len, from + max_tokens);
        out.assign(t.begin() + static_cast<std::ptrdiff_t>(from), t.begin() + static_cast<std::ptrdiff_t>(to));
        return;
      }
    }
  }

  NgramConfig config_;
};

}  // namespace

std::unique_ptr<Proposer> make_ngram_proposer(const NgramConfig& config) {
  return std::make_unique<NgramProposer>(config);
}

}  // namespace tern::spec
