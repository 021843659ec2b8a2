// Iteration-level (continuous) batching, as Orca and vLLM schedule: every step picks which sequences
// run and how many of their tokens, under a token budget and the KV cache's capacity.
//
// schedule(): running sequences first, in priority order (decodes, and the next chunk of a prompt
// whose prefill was chunked), then waiting ones (new requests, preempted ones) for as much of their
// prompt as the budget leaves (chunked prefill). A new sequence first shares whatever prefix of its
// tokens the prefix cache holds; one whose prompt starts like a prompt still being prefilled waits
// until those blocks are computed and published instead of computing them a second time (requests
// with a common system prompt arriving together, `n` choices of one prompt). When the cache has no
// block for a running sequence, the lowest-priority running sequence is preempted by recompute: its
// blocks are released (its full blocks stay cached, so recompute is often a prefix hit) and it waits
// again at its priority.
// Speculative decoding is a decode with extra slots: a sequence with spec_k > 0 gets up to that
// many more tokens' budget and KV slots for draft tokens, never at the expense of another running
// sequence's decode token and never by preempting one.
// update(): after the forward pass, advances each scheduled sequence, appends the tokens it
// produced (for a speculative decode: the accepted drafts, then one sampled token), gives back the
// slots of rejected drafts, and publishes newly full blocks to the prefix cache.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/sequence.h"
#include "kv/kv_cache.h"

namespace tern {

struct SchedulerConfig {
  int32_t max_batch_tokens = 512;  // tokens per forward pass (the model's workspace)
  int32_t max_running = 256;       // sequences in the running set
  bool prefix_caching = true;
  // Free blocks a new sequence must leave for the running ones' growth (avoids admitting work that
  // is preempted a step later).
  int32_t watermark_blocks = 0;
  // Speculative decoding: KV slots each running sequence may want beyond its decode token (the
  // most draft tokens). Admission leaves a block's worth of them per running sequence free, so
  // that a full cache does not stop speculation.
  int32_t lookahead_slots = 0;
};

// Tokens [seq->n_computed, seq->n_computed + n_tokens - n_draft) run this step; if `sample`, the
// last one's logits are wanted (the chunk reaches the end of the sequence's tokens). A decode may
// carry up to n_draft draft tokens after its token, with KV slots and budget reserved for them.
struct ScheduledChunk {
  Sequence* seq;
  int32_t n_tokens;
  bool sample;
  int32_t n_draft = 0;
};

// What a step added to each chunk's sequence: nothing (a prompt chunk short of the end), one
// sampled token, or the accepted draft tokens followed by one sampled token.
struct StepOutput {
  std::vector<int32_t> tokens;
  std::vector<int32_t> offsets{0};  // chunk i's tokens are tokens[offsets[i], offsets[i + 1])
  void clear() {
    tokens.clear();
    offsets.assign(1, 0);
  }
  void end_chunk() { offsets.push_back(static_cast<int32_t>(tokens.size())); }
  size_t n_chunks() const { return offsets.size() - 1; }
  std::span<const int32_t> chunk(size_t i) const {
    return std::span<const int32_t>(tokens).subspan(static_cast<size_t>(offsets[i]),
                                                    static_cast<size_t>(offsets[i + 1] - offsets[i]));
  }
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;
  std::vector<kv::BlockCopy> copies;  // copy-on-write, to perform before the forward pass
  int32_t n_tokens = 0;
  bool empty() const { return chunks.empty(); }
};

struct SchedulerStats {
  int64_t preemptions = 0;
  int64_t steps = 0;
  int64_t prefix_query_tokens = 0;  // prompt tokens of admitted sequences (first admission)
  int64_t prefix_hit_tokens = 0;    // of those, found in the prefix cache
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, kv::KvCache& kv);

  void add(Sequence* s);
  // Drops a sequence wherever it is (finished or cancelled) and returns its blocks.
  void remove(Sequence* s);
  // The plan lives in the scheduler and is rebuilt in place each step (no allocation once warm);
  // it stays valid until the next schedule().
  const StepPlan& schedule();
  // `out.chunk(i)` holds the tokens plan.chunks[i] produced.
  void update(const StepPlan& plan, const StepOutput& out);

  size_t n_waiting() const { return waiting_.size(); }
  size_t n_running() const { return running_.size(); }
  const SchedulerStats& stats() const { return stats_; }
  const SchedulerConfig& config() const { return config_; }

 private:
  void enqueue_waiting(Sequence* s);
  void preempt(Sequence* s);
  bool awaits_shared_prefill(const Sequence& s) const;

  SchedulerConfig config_;
  kv::KvCache& kv_;
  std::vector<Sequence*> waiting_;  // in priority order
  std::vector<Sequence*> running_;  // in priority order
  StepPlan plan_;
  SchedulerStats stats_;
};

}  // namespace tern
