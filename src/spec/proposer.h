// Speculative decoding's proposers: something cheaper than the target model guesses a sequence's
// next tokens, and the target checks them all in one forward pass (src/spec/verifier.h decides
// which survive). Three kinds: a small draft model with its own paged KV cache, the target's own
// first layers (layer skipping), and n-gram lookup in the prompt and the text so far.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "models/batch.h"
#include "sampling/sampler.h"

namespace tern {
class Backend;
class Model;
class KvStorage;
}  // namespace tern

namespace tern::spec {

// What a proposer drafted for one sequence.
struct Draft {
  std::vector<int32_t> tokens;
  // When the proposer sampled (a model at temperature > 0): q[i] is the distribution tokens[i] was
  // drawn from. Otherwise every token was chosen deterministically (q one-hot at the token). The
  // vectors are kept from step to step so that their memory is reused.
  bool sampled = false;
  std::vector<std::vector<TokenProb>> q;
  std::span<const TokenProb> q_of(size_t i) const { return sampled ? std::span<const TokenProb>(q[i]) : std::span<const TokenProb>(); }
  void clear() {
    tokens.clear();
    sampled = false;
  }
};

struct DraftRequest {
  uint64_t seq_id = 0;
  std::span<const int32_t> tokens;  // the sequence so far; the last token has no keys and values yet
  KvSeq target_kv;                  // the target's block table, with slots for the drafted tokens
  int32_t max_tokens = 0;           // draft at most this many (a proposer may find fewer, or none)
  const SamplingParams* sampling = nullptr;  // the target's sampling: a model drafts the same way
  Draft* out = nullptr;
};

class Proposer {
 public:
  virtual ~Proposer() = default;
  virtual std::string_view name() const = 0;
  // Cost of drafting one token, as a fraction of one target decode step (for choosing how many).
  virtual double draft_cost() const = 0;
  // Fills each request's `out` (cleared first).
  virtual void propose(std::span<const DraftRequest> requests) = 0;
  // The sequence has finished: drop what is kept for it.
  virtual void release(uint64_t /*seq_id*/) {}
};

struct NgramConfig {
  int max_ngram = 4;  // longest suffix looked up first
  int min_ngram = 2;  // shortest suffix that may match
};
std::unique_ptr<Proposer> make_ngram_proposer(const NgramConfig& config);

// The target model's first `n_layers` layers, then its final norm and output head. Writes those
// layers' keys and values into the target's cache at the draft positions; the verifying pass
// overwrites them.
std::unique_ptr<Proposer> make_layer_skip_proposer(Model& target, KvStorage& target_kv, int n_layers,
                                                   int max_batch_tokens);

struct DraftModelConfig {
  std::string path;
  int64_t n_vocab = 0;         // the target's; the draft's must be the same
  int32_t n_ctx = 0;           // longest sequence
  int32_t kv_tokens = 0;       // token slots of the draft's KV cache (at least n_ctx)
  int32_t kv_block_size = 8;
  int max_batch_tokens = 512;
  size_t target_decode_bytes = 0;  // for draft_cost()
};
std::unique_ptr<Proposer> make_draft_model_proposer(const DraftModelConfig& config, Backend& backend);

}  // namespace tern::spec
