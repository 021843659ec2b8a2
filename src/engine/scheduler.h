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
// update(): after the forward pass, advances each scheduled sequence, appends the sampled tokens
// and publishes newly full blocks to the prefix cache.
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
};

// Tokens [seq->n_computed, seq->n_computed + n_tokens) run this step; if `sample`, the last one's
// logits are wanted (the chunk reaches the end of the sequence's tokens).
struct ScheduledChunk {
  Sequence* seq;
  int32_t n_tokens;
  bool sample;
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
  // `sampled[i]` is the token sampled for plan.chunks[i] (ignored where it does not sample).
  void update(const StepPlan& plan, std::span<const int32_t> sampled);

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
