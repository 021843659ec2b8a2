// Self-speculative drafting by layer skipping (Draft & Verify, Zhang et al. 2023; LayerSkip, Elhoushi
// et al. 2024): the target's first layers and its output head make the draft model, so there is no
// second model to load or keep in step. The draft passes write keys and values of those layers into
// the target's own cache at the draft positions; the verifying pass rewrites them for all layers.
#include <algorithm>

#include "core/error.h"
#include "models/model.h"
#include "spec/draft_sampling.h"
#include "spec/proposer.h"

namespace tern::spec {
namespace {

class LayerSkipProposer final : public Proposer {
 public:
  LayerSkipProposer(Model& target, KvStorage& kv, int n_layers, int max_batch_tokens)
      : model_(target), kv_(kv), n_layers_(n_layers), max_batch_(max_batch_tokens) {
    const int total = target.info().n_layer;
    TERN_CHECK(n_layers >= 1 && n_layers < total, "layer-skip drafting needs 1..{} layers of the target's {}, got {}",
               total - 1, total, n_layers);
    TERN_CHECK(max_batch_tokens > 0, "layer-skip drafting: max_batch_tokens {}", max_batch_tokens);
  }
  std::string_view name() const override { return "layerskip"; }
  // The draft runs n_layers of the layers; the output head is shared with the verifying pass.
  double draft_cost() const override { return static_cast<double>(n_layers_) / model_.info().n_layer; }

  void propose(std::span<const DraftRequest> requests) override {
    int32_t longest = 0;
    for (const DraftRequest& r : requests) {
      r.out->clear();
      longest = std::max(longest, r.max_tokens);
    }
    const size_t V = static_cast<size_t>(model_.info().n_vocab);
    // Step j drafts each sequence's token j from its token j - 1 (the last real token for j = 0),
    // in batches of at most max_batch_ sequences.
    for (int32_t j = 0; j < longest; ++j) {
      for (size_t first = 0; first < requests.size();) {
        batch_.clear();
        batch_.n_layers = n_layers_;
        rows_.clear();
        size_t i = first;
        for (; i < requests.size() && batch_.size() < max_batch_; ++i) {
          const DraftRequest& r = requests[i];
          if (r.max_tokens <= j || static_cast<int32_t>(r.out->tokens.size()) != j) continue;
          const int32_t token = j == 0 ? r.tokens.back() : r.out->tokens.back();
          const auto pos = static_cast<int32_t>(r.tokens.size()) - 1 + j;
          batch_.add(r.target_kv, std::span<const int32_t>(&token, 1), pos);
          batch_.logit_rows.push_back(static_cast<int32_t>(batch_.size()) - 1);
          rows_.push_back(i);
        }
        first = i;
        if (rows_.empty()) continue;
        if (logits_.size() < V * rows_.size()) logits_.resize(V * rows_.size());
        model_.forward(batch_, kv_, logits_.data());
        for (size_t k = 0; k < rows_.size(); ++k)
          sampling_.draw(requests[rows_[k]], std::span<float>(logits_.data() + V * k, V));
      }
    }
  }

  void release(uint64_t seq_id) override { sampling_.release(seq_id); }

 private:
  Model& model_;
  KvStorage& kv_;
  int n_layers_;
  int64_t max_batch_;
  DraftSampling sampling_;
  Batch batch_;
  std::vector<size_t> rows_;  // request index of each logits row
  std::vector<float> logits_;
};

}  // namespace

std::unique_ptr<Proposer> make_layer_skip_proposer(Model& target, KvStorage& kv, int n_layers, int max_batch_tokens) {
  return std::make_unique<LayerSkipProposer>(target, kv, n_layers, max_batch_tokens);
}

}  // namespace tern::spec
