// Drafting with a smaller model of the same vocabulary (Leviathan et al. 2023): e.g. the target at
// 4 bits drafting for itself at 8 or 16. The draft keeps its own paged KV cache; at each call it
// first catches up with the tokens the target accepted since (keeping the longest prefix its cache
// still agrees with: rejected drafts are rolled back), then drafts one token per pass, all
// sequences batched together.
#include <algorithm>
#include <unordered_map>

#include "core/error.h"
#include "formats/gguf/gguf.h"
#include "kv/kv_cache.h"
#include "models/kv_storage.h"
#include "models/model.h"
#include "spec/draft_sampling.h"
#include "spec/proposer.h"

namespace tern::spec {
namespace {

class DraftModelProposer final : public Proposer {
 public:
  DraftModelProposer(const DraftModelConfig& c, Backend& backend)
      : config_(c), file_(gguf::File::open(c.path)), model_(load_model(file_, backend, {.max_batch_tokens = c.max_batch_tokens})) {
    const ModelInfo& mi = model_->info();
    TERN_CHECK(mi.n_vocab == c.n_vocab, "{}: the draft model's vocabulary has {} tokens, the target's {}", c.path,
               mi.n_vocab, c.n_vocab);
    TERN_CHECK(c.kv_block_size >= 1 && c.kv_tokens >= c.n_ctx && c.n_ctx > 0, "draft model: KV cache of {} tokens for a context of {}",
               c.kv_tokens, c.n_ctx);
    const int32_t n_blocks = (c.kv_tokens + c.kv_block_size - 1) / c.kv_block_size;
    storage_ = std::make_unique<KvStorage>(KvStorageConfig{.n_layer = mi.n_layer,
                                                           .n_kv_head = mi.n_kv_head,
                                                           .head_dim = mi.head_dim,
                                                           .block_size = c.kv_block_size,
                                                           .n_blocks = n_blocks,
                                                           .dtype = DType::F16},
                                          backend);
    kv_ = std::make_unique<kv::KvCache>(n_blocks, c.kv_block_size);
  }
  std::string_view name() const override { return "draft"; }
  double draft_cost() const override {
    return config_.target_decode_bytes > 0
               ? static_cast<double>(model_->info().decode_weight_bytes) / static_cast<double>(config_.target_decode_bytes)
               : 0.5;
  }

  void propose(std::span<const DraftRequest> requests) override {
    todo_.clear();
    for (size_t i = 0; i < requests.size(); ++i) {
      const DraftRequest& r = requests[i];
      r.out->clear();
      if (r.max_tokens <= 0 || r.tokens.empty()) continue;
      sync(r);
      todo_.push_back(i);
    }
    const size_t V = static_cast<size_t>(model_->info().n_vocab);
    while (!todo_.empty()) {
      batch_.clear();
      rows_.clear();
      copies_.clear();
      int32_t budget = config_.max_batch_tokens;
      size_t keep = 0;
      for (size_t t = 0; t < todo_.size(); ++t) {
        const DraftRequest& r = requests[todo_[t]];
        State& st = seqs_.at(r.seq_id);
        const auto done = static_cast<int32_t>(st.computed.size());
        const auto n_real = static_cast<int32_t>(r.tokens.size());
        // The tokens to compute: the rest of the sequence, or else the last draft token.
        std::span<const int32_t> chunk;
        if (done < n_real) {
          chunk = r.tokens.subspan(static_cast<size_t>(done), static_cast<size_t>(std::min(n_real - done, budget)));
        } else {
          chunk = std::span<const int32_t>(&r.out->tokens.back(), 1);
        }
        if (chunk.empty()) {  // no budget left this pass
          todo_[keep++] = todo_[t];
          continue;
        }
        if (!kv_->grow(st.kv, done + static_cast<int32_t>(chunk.size()), copies_)) continue;  // cache full: stop here
        batch_.add({st.kv.blocks.data(), static_cast<int32_t>(st.kv.blocks.size())}, chunk, done);
        st.computed.insert(st.computed.end(), chunk.begin(), chunk.end());
        budget -= static_cast<int32_t>(chunk.size());
        if (done + static_cast<int32_t>(chunk.size()) >= n_real) {
          batch_.logit_rows.push_back(static_cast<int32_t>(batch_.size()) - 1);
          rows_.push_back(todo_[t]);
        }
        todo_[keep++] = todo_[t];
      }
      todo_.resize(keep);
      if (batch_.size() == 0) break;
      for (const kv::BlockCopy& c : copies_) storage_->copy_block(c.src, c.dst, c.n_slots);
      if (logits_.size() < V * rows_.size()) logits_.resize(V * rows_.size());
      model_->forward(batch_, *storage_, logits_.data());
      for (size_t k = 0; k < rows_.size(); ++k) sampling_.draw(requests[rows_[k]], std::span<float>(logits_.data() + V * k, V));
      // Finished: as many drafts as asked for.
      std::erase_if(todo_, [&](size_t i) {
        return static_cast<int32_t>(requests[i].out->tokens.size()) >= requests[i].max_tokens;
      });
    }
  }

  void release(uint64_t seq_id) override {
    if (const auto it = seqs_.find(seq_id); it != seqs_.end()) {
      kv_->free(it->second.kv);
      seqs_.erase(it);
    }
    sampling_.release(seq_id);
  }

 private:
  struct State {
    kv::SeqBlocks kv;
    std::vector<int32_t> computed;  // tokens whose keys and values the draft's cache holds, in order
  };

  // Keeps the longest prefix of the draft's cache that agrees with the sequence (drafts the target
  // rejected are dropped) and leaves at least the last token to compute, for its logits.
  void sync(const DraftRequest& r) {
    State& st = seqs_[r.seq_id];
    if (st.kv.blocks.empty()) {
      st.computed.clear();
      const int32_t hit = kv_->match_prefix(st.kv, r.tokens);
      st.computed.assign(r.tokens.begin(), r.tokens.begin() + hit);
    }
    const size_t limit = std::min(st.computed.size(), r.tokens.size() - 1);
    size_t common = 0;
    while (common < limit && st.computed[common] == r.tokens[common]) ++common;
    st.computed.resize(common);
    kv_->truncate(st.kv, static_cast<int32_t>(common));
    kv_->publish(st.kv, r.tokens, static_cast<int32_t>(common));
  }

  DraftModelConfig config_;
  gguf::File file_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<KvStorage> storage_;
  std::unique_ptr<kv::KvCache> kv_;
  std::unordered_map<uint64_t, State> seqs_;
  DraftSampling sampling_;
  Batch batch_;
  std::vector<size_t> todo_, rows_;
  std::vector<kv::BlockCopy> copies_;
  std::vector<float> logits_;
};

}  // namespace

std::unique_ptr<Proposer> make_draft_model_proposer(const DraftModelConfig& config, Backend& backend) {
  return std::make_unique<DraftModelProposer>(config, backend);
}

}  // namespace tern::spec
