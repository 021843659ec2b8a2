// tern's C++ API: load a model, tokenize, apply its chat template, generate with streaming.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tern/sampling.h"

namespace tern {

// Speculative decoding: a proposer drafts a sequence's next tokens and one forward pass of the model
// verifies them all (exact rejection sampling, so outputs follow the model's distribution; greedy
// outputs are identical token for token).
struct SpeculativeConfig {
  std::string method;       // "" (off), "ngram", "draft" or "layerskip"
  std::string draft_model;  // "draft": a GGUF file with the model's vocabulary
  int layers = 0;           // "layerskip": layers the draft runs (0: a third of the model's)
  int ngram_min = 2, ngram_max = 4;  // "ngram": suffix lengths looked up, longest first
  int k = 0;                // most tokens drafted per step; 0: 8 for ngram, 4 for the others
  bool adaptive = true;     // each sequence's k follows its acceptance rate and the measured cost
  // Speculate only while at most this many sequences run: in a bigger batch the forward pass is
  // busy with arithmetic and drafts cost more than they save. 0: 4; -1: no limit.
  int max_batch = 0;
};
// "ngram", "ngram:MIN-MAX", "layerskip", "layerskip:L" or "draft:FILE" (the CLI's --spec); throws
// naming the fault.
SpeculativeConfig parse_speculative(std::string_view spec);

struct EngineConfig {
  std::string model_path;
  int n_threads = 0;            // 0: one per hardware thread
  int n_ctx = 0;                // 0: the model's training context, capped at 4096
  int max_batch_tokens = 512;   // tokens per forward pass (prompt chunks and decodes together)
  // Token slots per KV cache block. Small blocks waste less memory at the end of each sequence (half
  // a block on average) and let the prefix cache match at a finer grain; the kernels do not care.
  int kv_block_size = 8;
  // KV cache storage: "f16" (default), "f32", "q8_0" (8-bit levels, an f16 scale per 32 values:
  // 53% of f16's bytes) or "fp8" (E4M3: half). Attention reads it directly.
  std::string kv_type = "f16";
  // KV cache budget in bytes, allocated once as a pool of blocks shared by all requests.
  // 0: room for one full context (n_ctx tokens). It must hold at least one full context.
  size_t kv_memory = 0;
  // With kv_memory 0 and this > 0: this fraction of the memory available now (MemAvailable), at
  // least one context and at most max_running contexts.
  double kv_memory_fraction = 0;
  int max_running = 256;        // sequences batched together at most
  bool prefix_caching = true;   // requests sharing a prompt prefix share its KV blocks
  SpeculativeConfig speculative;
  std::string backend = "cpu";  // "cpu", "cuda" (one NVIDIA GPU) or "ref" (the scalar oracle; slow)
  // Passes whose every sampled row needs only its best logits (greedy, or top-k sampling without
  // penalties, log-probabilities or speculation) bring back only those, selected by the backend in
  // the sampler's order: the same tokens, and on a GPU 8 bytes per candidate per row instead of the
  // whole vocabulary, with no sort of it on the host. false: whole rows always.
  bool sample_from_top_logits = true;
  // F32 activations into every matmul. Default off: activations are rounded to 8-bit blocks (or F16)
  // before quantised matmuls, as llama.cpp does, so greedy outputs match the peer's.
  bool exact_activations = false;
  // Debugging: called with every named intermediate of every forward pass ("inp_embd",
  // "blk.3.attn_out", ..., "result_output"), its values as f32 in ggml order with `shape` innermost
  // first. Slows the pass down; leave unset in production.
  std::function<void(std::string_view name, std::span<const float> values, std::span<const int64_t> shape)>
      on_tensor;
};

struct ChatMessage {
  std::string role;
  std::string content;
};

struct GenerateRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int max_tokens = 128;
  bool ignore_eos = false;
  std::vector<std::string> stop;  // generation ends before the first occurrence of any
  // -1: no log-probabilities. 0..20: each generated token's log-probability (of the model's
  // distribution, before sampling transforms) and this many most likely alternatives.
  int top_logprobs = -1;
  int priority = 0;  // lower runs first; equal priorities run in arrival order
};

struct TokenLogprob {
  int32_t token;
  float logprob;
};

enum class FinishReason { Length, Stop, Eos, Context, Cancelled };
std::string_view finish_reason_name(FinishReason r);

// A piece of streamed output: the token just generated and the text it completes (possibly empty
// while a multi-byte character or a possible stop string is still pending).
struct StreamChunk {
  int32_t token;
  std::string_view text;
};

using RequestId = uint64_t;

// What one step produced for one submitted request: a generated token with the text it completes,
// or (finished) the end of the request with the text still held back, if any.
struct RequestEvent {
  RequestId id = 0;
  bool has_token = false;
  int32_t token = -1;
  std::string_view text;
  float logprob = 0;                 // when requested
  std::span<const TokenLogprob> top; // when requested, most likely first
  bool finished = false;
  FinishReason finish = FinishReason::Length;
  int32_t prompt_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
  int32_t generated_tokens = 0;
};
// Called on the thread running step(); returning false cancels the request.
using EventSink = std::function<bool(const RequestEvent&)>;

// A snapshot of the engine's state, for /metrics.
struct EngineMetrics {
  int64_t running = 0, waiting = 0;
  int64_t kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_cached = 0, kv_block_size = 0;
  int64_t kv_tokens_held = 0;     // token slots written in the referenced blocks (a shared block counts once)
  int64_t kv_tokens_logical = 0;  // tokens the sequences hold, each counting its shared prefix
  int64_t prefix_query_tokens = 0, prefix_hit_tokens = 0;
  int64_t preemptions = 0, steps = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0;  // totals, computed prompt tokens (hits excluded)
  int64_t requests_finished = 0;
  // Speculative decoding: verifying passes (one per sequence and step), tokens drafted, drafts
  // accepted, and tokens those passes produced (accepted drafts plus one sampled token each).
  int64_t spec_verify_passes = 0, spec_draft_tokens = 0, spec_accepted_tokens = 0, spec_emitted_tokens = 0;
  // Tokens sampled from their row's best logits alone (EngineConfig::sample_from_top_logits).
  int64_t tokens_from_top_logits = 0;
};

struct GenerateResult {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason finish = FinishReason::Length;
  double prompt_seconds = 0;
  double generate_seconds = 0;
};

struct ModelSummary {
  std::string path;
  std::string arch;
  std::string name;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int n_ctx = 0;
  int n_layer = 0;
  size_t weight_bytes = 0;
  size_t decode_weight_bytes = 0;  // weight bytes one decoded token reads
  int64_t matmul_params = 0;       // weights multiplied per token (2 flops each)
  size_t kv_bytes = 0;
  size_t kv_bytes_per_token = 0;   // K and V of one position, all layers
  std::string backend;
  int n_threads = 0;
  // Speculative decoding: what one drafted token costs, in decode steps (verifying it, measured at
  // load, plus drafting it); 0 when off.
  double spec_token_cost = 0;
};

class Engine {
 public:
  // Throws tern::Error with a one-line message naming the file or parameter at fault.
  static std::unique_ptr<Engine> load(const EngineConfig& config);
  ~Engine();

  const ModelSummary& summary() const;
  std::vector<int32_t> tokenize(std::string_view text, bool add_special = true, bool parse_special = false) const;
  std::string detokenize(std::span<const int32_t> ids) const;
  std::string token_text(int32_t id) const;
  // Renders the model's own chat template (tokenizer.chat_template); throws if it has none.
  std::string apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  bool has_chat_template() const;

  // Generates for request.prompt, running steps on the calling thread until it is done (other
  // submitted requests progress too); `on_chunk` returning false cancels.
  GenerateResult generate(const GenerateRequest& request,
                          const std::function<bool(const StreamChunk&)>& on_chunk = {});

  // Serving. submit() and cancel() may be called from any thread; step() from one thread at a time.
  // submit() validates the request (throws tern::Error naming the field at fault) and queues it;
  // its events arrive through `sink` from the thread calling step().
  RequestId submit(GenerateRequest request, EventSink sink);
  void cancel(RequestId id);
  // One scheduler iteration: admits queued requests, runs one forward pass over every scheduled
  // sequence, samples, and delivers events. Returns false when there was nothing to run.
  bool step();
  // Ends every request, queued or running, as cancelled (their sinks hear the end): what a server
  // does when a step failed and the batch's state can no longer be trusted.
  void abort_all();
  // Blocks until a request or cancellation is queued, or `seconds` pass.
  void wait_for_work(double seconds);
  EngineMetrics metrics() const;
  // The single-sequence helpers below need an engine with no submitted requests.
  // Forward passes timed as llama-bench times them, for `tern bench`: `prompt` in batches of
  // max_batch_tokens (logits of the last token only), then, on a cleared context, `n_gen`
  // single-token passes feeding back the argmax (no sampler). Both start after `depth` tokens of
  // context (llama-bench's -d), prefilled untimed before each of them: the tokens of `prompt`, again
  // and again.
  struct PassTiming {
    double prompt_seconds = 0;
    double gen_seconds = 0;
  };
  PassTiming time_passes(std::span<const int32_t> prompt, int n_gen, int depth = 0);
  // Logits of positions first_row.. of `ids` ([n_vocab] per position, concatenated): for reference
  // checks and perplexity (which scores only part of each window).
  std::vector<float> logits(std::span<const int32_t> ids, size_t first_row = 0);

 private:
  friend struct EngineTestAccess;  // tests that inspect the KV cache (tests/unit/test_spec.cpp)
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern
