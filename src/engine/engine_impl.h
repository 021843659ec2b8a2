// The engine's internals, shared by engine.cpp (loading, the single-sequence helpers) and
// engine_step.cpp (requests, the step loop).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "sampling/sampler.h"
#include "spec/draft_length.h"
#include "spec/proposer.h"
#include "spec/verifier.h"
#include "engine/scheduler.h"
#include "engine/stop_matcher.h"
#include "formats/gguf/gguf.h"
#include "kv/kv_cache.h"
#include "models/model.h"
#include "tern/engine.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"

namespace tern {

// A submitted request: what it asked for and the state of its output stream.
struct Request {
  RequestId id;
  GenerateRequest params;
  EventSink sink;
  Sequence seq;
  Sampler sampler;
  StopMatcher stops;
  Detokenizer detok;
  std::vector<TokenLogprob> top;  // scratch for the current token's alternatives
  int32_t n_emitted = 0;          // tokens delivered to the sink (an end-of-generation token is not)
  spec::DraftLength draft_length;  // speculative decoding: how many tokens to draft next
  spec::Draft draft;               // this step's drafted tokens

  Request(RequestId i, GenerateRequest p, EventSink s, const Tokenizer& tok, spec::DraftLength dl)
      : id(i), params(std::move(p)), sink(std::move(s)), sampler(params.sampling), stops(params.stop), detok(tok),
        draft_length(dl) {}
};

struct Engine::Impl {
  gguf::File file;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
  std::unique_ptr<KvStorage> kv_storage;
  std::unique_ptr<kv::KvCache> kv;
  std::unique_ptr<Scheduler> scheduler;
  Tokenizer tokenizer;
  std::string chat_template;
  ModelSummary summary;
  EngineConfig config;
  std::vector<float> logits;  // [n_vocab, rows needing logits], or their best [k, rows]
  std::vector<int32_t> top_ids;  // [k, rows]: the ids of those best logits
  Batch batch;

  // Requests: the inbox is filled by submit()/cancel() on any thread and drained by step().
  mutable std::mutex inbox_mutex;
  std::condition_variable inbox_cv;
  std::deque<std::unique_ptr<Request>> inbox;
  std::vector<RequestId> cancelled;
  RequestId next_id = 1;
  uint64_t next_arrival = 0;
  std::unordered_map<RequestId, std::unique_ptr<Request>> active;  // owned by the step thread
  EngineMetrics metrics;  // published under inbox_mutex after every step
  int64_t prompt_tokens_computed = 0, generated_tokens = 0, requests_finished = 0, tokens_from_top_logits = 0;
  std::vector<int32_t> kv_fill;  // publish_metrics: tokens written per block (all zero between calls)
  // Speculative decoding (none when config.speculative.method is empty).
  std::unique_ptr<spec::Proposer> proposer;
  std::unique_ptr<spec::Verifier> verifier;
  int32_t spec_k_max = 0;
  int32_t spec_max_batch = 0;  // speculate while at most this many sequences run (-1: always)
  double spec_cost = 0;  // cost of one drafted token, in decode steps: verifying it plus drafting it
  int64_t spec_verify_passes = 0, spec_draft_tokens = 0, spec_accepted_tokens = 0, spec_emitted_tokens = 0;

  // step() scratch, reused so that the loop does not allocate once warm.
  std::vector<Request*> chunk_requests;  // the request of each chunk of the plan
  StepOutput out;                      // tokens each chunk produced
  std::vector<const float*> out_rows;  // the logits row each of them was sampled from
  std::vector<spec::DraftRequest> draft_requests;
  std::vector<int32_t> chunk_tokens;   // a speculative chunk: its decode token, then the drafts
  std::vector<int32_t> history;        // the penalty window while verifying drafts
  std::vector<float> row_copy;         // logits left unmodified for log-probabilities

  void setup_speculation();

  Impl(gguf::File f, const EngineConfig& c) : file(std::move(f)), tokenizer(Tokenizer::from_gguf(file)), config(c) {}

  void check_prompt(std::span<const int32_t> ids) const;
  // Single-sequence helpers (time_passes, logits): a private sequence outside the scheduler.
  // Logits of ids[first_logit..] into `out` ([n_vocab] per row); with top_k > 0 their top_k best
  // into `out` and top_ids instead (Batch::logit_top_k).
  void run_private(kv::SeqBlocks& s, std::span<const int32_t> ids, int32_t pos0, size_t first_logit, float* out,
                   int32_t top_k = 0);
  void require_idle(const char* what) const;
  // model->forward with top_ids sized for b.logit_top_k; logits into `out`, or into `logits` (sized
  // for b's rows) when out is null.
  void forward(const Batch& b, float* out = nullptr);

  // The step loop (engine_step.cpp).
  void admit_inbox();
  void finish(Request& r, FinishReason why, bool notify);
  bool deliver(Request& r, int32_t token, const float* row);
  // Appends to `out` the tokens a speculative chunk produces: accepted drafts, then one sampled
  // token; `rows` are the chunk's logits, one per token it ran.
  void verify_drafts(Request& r, float* rows);
  // The request's sampling distribution for a logits row (a copy of it when log-probabilities
  // need the row unmodified).
  std::span<const TokenProb> target_distribution(Request& r, float* row, std::span<const int32_t> history);
  // A token sampled from that distribution (Sampler::sample: the same token as drawing from it).
  int32_t sample_row(Request& r, float* row, std::span<const int32_t> history);
  // The row a request samples from: `row` itself, or a copy when log-probabilities need it unmodified.
  std::span<float> sampling_row(const Request& r, float* row);
  // How many best logits per row this step's pass may bring back instead of whole rows
  // (Batch::logit_top_k): the most any sampled row needs, or 0 when one needs its whole row.
  int32_t top_logits_wanted(const StepPlan& plan) const;
  void publish_metrics();
};

}  // namespace tern
