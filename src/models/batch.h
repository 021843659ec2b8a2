// What a forward pass receives: the flattened tokens of many sequences (prefill chunks and decode
// tokens mixed), their positions, each sequence's KV block table, and which rows need logits.
// The model never sees requests; batch size 1 is just a batch with one sequence.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ops/ops.h"

namespace tern {

// The most best logits per row a forward pass returns instead of whole rows (Batch::logit_top_k).
inline constexpr int32_t kMaxTopLogits = 256;

struct Batch {
  std::vector<int32_t> tokens;       // [n_tokens]
  std::vector<int32_t> positions;    // [n_tokens]
  std::vector<int32_t> token_seq;    // [n_tokens] index into seqs
  std::vector<KvSeq> seqs;           // block tables (memory owned by the caller)
  std::vector<int32_t> logit_rows;   // token indices whose logits are returned, in this order
  // 0: whole rows of logits; k > 0 (at most kMaxTopLogits): only each row's k best logits and their
  // ids (Model::forward), all that top-k or greedy sampling needs.
  int32_t logit_top_k = 0;
  // Run only the first n_layers layers, then the final norm and output head: self-speculative
  // drafting by layer skipping. 0: all layers.
  int32_t n_layers = 0;

  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  // Appends a sequence's consecutive tokens at positions pos0, pos0 + 1, ...; returns its index.
  int32_t add(const KvSeq& seq, std::span<const int32_t> ids, int32_t pos0) {
    const auto s = static_cast<int32_t>(seqs.size());
    seqs.push_back(seq);
    for (size_t i = 0; i < ids.size(); ++i) {
      tokens.push_back(ids[i]);
      positions.push_back(pos0 + static_cast<int32_t>(i));
      token_seq.push_back(s);
    }
    return s;
  }
  void clear() {
    tokens.clear();
    positions.clear();
    token_seq.clear();
    seqs.clear();
    logit_rows.clear();
    logit_top_k = 0;
    n_layers = 0;
  }
};

}  // namespace tern
