// Loading a model and its tokenizer, and the single-sequence helpers (bench timing, reference
// logits). Requests and the step loop are in engine_step.cpp.
#include "tern/engine.h"

#include <algorithm>
#include <chrono>
#include <charconv>

#include "backends/cpu/cpu_backend.h"
#include "backends/cuda/cuda_backend.h"
#include "core/argmax.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/engine_impl.h"
#include "formats/gguf/gguf.h"
#include "models/model.h"
#include "ops/ref/ref_ops.h"
#include "tokenizer/chat.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"

namespace tern {

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Length: return "length";
    case FinishReason::Stop: return "stop";
    case FinishReason::Eos: return "eos";
    case FinishReason::Context: return "context";
    case FinishReason::Cancelled: return "cancelled";
  }
  return "?";
}

namespace {

// The KV cache's storage type from its name (EngineConfig::kv_type).
DType parse_kv_type(const std::string& name) {
  if (name == "f16") return DType::F16;
  if (name == "f32") return DType::F32;
  if (name == "q8_0" || name == "int8") return DType::Q8_0;
  if (name == "fp8" || name == "fp8_e4m3") return DType::F8_E4M3;
  fail("KV cache type '{}' unknown (f16, f32, q8_0 or int8, fp8 or fp8_e4m3)", name);
}

// The most tokens drafted per step: --spec-k, else a default per method.
int32_t spec_k_max(const SpeculativeConfig& sc) { return sc.k > 0 ? sc.k : (sc.method == "ngram" ? 8 : 4); }

}  // namespace

SpeculativeConfig parse_speculative(std::string_view spec) {
  SpeculativeConfig c;
  const size_t colon = spec.find(':');
  const std::string_view method = spec.substr(0, colon);
  const std::string_view arg = colon == std::string_view::npos ? std::string_view() : spec.substr(colon + 1);
  // A positive integer filling all of `s`, or 0.
  auto positive = [](std::string_view s) {
    int v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && end == s.data() + s.size() && v > 0 ? v : 0;
  };
  if (method == "ngram") {
    if (colon != std::string_view::npos) {
      const size_t dash = arg.find('-');
      c.ngram_min = positive(arg.substr(0, dash));
      c.ngram_max = dash == std::string_view::npos ? 0 : positive(arg.substr(dash + 1));
      TERN_CHECK(c.ngram_min > 0 && c.ngram_max >= c.ngram_min && c.ngram_max <= 64,
                 "--spec ngram:MIN-MAX needs 1 <= MIN <= MAX <= 64, got '{}'", arg);
    }
  } else if (method == "layerskip") {
    if (colon != std::string_view::npos) {
      c.layers = positive(arg);
      TERN_CHECK(c.layers > 0, "--spec layerskip:L needs a positive layer count, got '{}'", arg);
    }
  } else if (method == "draft") {
    TERN_CHECK(!arg.empty(), "--spec draft:FILE needs the draft model's file");
    c.draft_model = std::string(arg);
  } else {
    fail("unknown --spec '{}' (ngram, layerskip:L, draft:FILE)", spec);
  }
  c.method = std::string(method);
  return c;
}

void Engine::Impl::check_prompt(std::span<const int32_t> ids) const {
  TERN_CHECK(!ids.empty(), "the prompt is empty");
  TERN_CHECK(static_cast<int64_t>(ids.size()) < summary.n_ctx,
             "the prompt has {} tokens, more than the context of {} allows (raise --ctx-size)", ids.size(),
             summary.n_ctx);
  for (int32_t id : ids)
    TERN_CHECK(id >= 0 && id < summary.n_vocab, "token id {} outside the vocabulary of {}", id, summary.n_vocab);
}

void Engine::Impl::require_idle(const char* what) const {
  std::lock_guard lock(inbox_mutex);
  TERN_CHECK(active.empty() && inbox.empty(), "{} needs an engine with no requests in flight", what);
}

// Runs `ids` at positions pos0.. in one forward pass of a sequence that owns `s` (grown as needed);
// logits of every token if `all_logits`, else of the last one.
void Engine::Impl::run_private(kv::SeqBlocks& s, std::span<const int32_t> ids, int32_t pos0, size_t first_logit,
                               float* out, int32_t top_k) {
  std::vector<kv::BlockCopy> copies;
  TERN_CHECK(kv->grow(s, pos0 + static_cast<int32_t>(ids.size()), copies), "the KV cache is too small for {} tokens",
             pos0 + ids.size());
  batch.clear();
  batch.add({s.blocks.data(), static_cast<int32_t>(s.blocks.size())}, ids, pos0);
  for (size_t i = first_logit; i < ids.size(); ++i) batch.logit_rows.push_back(static_cast<int32_t>(i));
  batch.logit_top_k = top_k;
  forward(batch, out);
}

void Engine::Impl::forward(const Batch& b, float* out) {
  const size_t rows = b.logit_rows.size(), V = static_cast<size_t>(summary.n_vocab);
  const size_t k = static_cast<size_t>(b.logit_top_k);
  if (!out) {
    if (logits.size() < V * rows) logits.resize(V * rows);
    out = logits.data();
  }
  if (top_ids.size() < k * rows) top_ids.resize(k * rows);
  model->forward(b, *kv_storage, out, top_ids.data());
}

// Loads the proposer and measures what a drafted token costs the verifying pass on this machine: a
// pass over 1 + k tokens (logits of all) against a one-token pass.
void Engine::Impl::setup_speculation() {
  const SpeculativeConfig& sc = config.speculative;
  if (sc.method.empty()) return;
  TERN_CHECK(sc.k >= 0 && sc.k <= 32, "speculative k must be in 0..32, got {}", sc.k);
  TERN_CHECK(sc.max_batch >= -1, "speculative max_batch must be >= -1, got {}", sc.max_batch);
  spec_k_max = tern::spec_k_max(sc);
  spec_max_batch = sc.max_batch != 0 ? sc.max_batch : 4;
  TERN_CHECK(spec_k_max + 1 <= config.max_batch_tokens, "speculative k {} needs a batch of at least {} tokens",
             spec_k_max, spec_k_max + 1);
  if (sc.method == "ngram") {
    TERN_CHECK(sc.draft_model.empty() && sc.layers == 0, "--spec ngram takes no draft model or layer count");
    proposer = spec::make_ngram_proposer({.max_ngram = sc.ngram_max, .min_ngram = sc.ngram_min});
  } else if (sc.method == "layerskip") {
    const int layers = sc.layers > 0 ? sc.layers : std::max(1, summary.n_layer / 3);
    proposer = spec::make_layer_skip_proposer(*model, *kv_storage, layers, config.max_batch_tokens);
  } else if (sc.method == "draft") {
    const int32_t kv_tokens = kv->pool().n_blocks() * kv->block_size();
    proposer = spec::make_draft_model_proposer({.path = sc.draft_model,
                                                .n_vocab = summary.n_vocab,
                                                .n_ctx = summary.n_ctx,
                                                .kv_tokens = kv_tokens,
                                                .kv_block_size = kv->block_size(),
                                                .max_batch_tokens = config.max_batch_tokens,
                                                .target_decode_bytes = summary.decode_weight_bytes},
                                               *backend);
  } else {
    fail("unknown speculative method '{}' (ngram, layerskip, draft)", sc.method);
  }
  verifier = std::make_unique<spec::Verifier>(summary.n_vocab);
  if (!sc.adaptive) return;
  using clock = std::chrono::steady_clock;
  const std::vector<int32_t> ids(static_cast<size_t>(spec_k_max + 1), 0);
  logits.resize(static_cast<size_t>(summary.n_vocab) * ids.size());
  auto time_pass = [&](size_t n) {
    kv::SeqBlocks sb;
    const auto t0 = clock::now();
    run_private(sb, std::span(ids).first(n), 0, 0, logits.data());
    const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
    kv->free(sb);
    return seconds;
  };
  // Warm passes first (the first ones after loading touch fresh scratch and KV pages, and find the
  // pool's workers asleep), then both sizes in turn, the fastest of each: timed back to back, a
  // burst of noise on the host slowed one size only and put the cost anywhere from 0.01 to 0.16 of
  // a step for the same file.
  for (int rep = 0; rep < 2; ++rep) time_pass(1), time_pass(ids.size());
  double one = 1e30, many = 1e30;
  for (int rep = 0; rep < 6; ++rep) {
    one = std::min(one, time_pass(1));
    many = std::min(many, time_pass(ids.size()));
  }
  const double verify_cost = std::max(0.0, (many - one) / (one * spec_k_max));
  spec_cost = verify_cost + proposer->draft_cost();
  summary.spec_token_cost = spec_cost;
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::load(const EngineConfig& config) {
  TERN_CHECK(config.max_batch_tokens > 0, "max_batch_tokens must be positive, got {}", config.max_batch_tokens);
  TERN_CHECK(config.n_threads >= 0, "threads must be >= 0, got {}", config.n_threads);
  TERN_CHECK(config.n_ctx >= 0, "context size must be >= 0, got {}", config.n_ctx);
  auto impl = std::make_unique<Impl>(gguf::File::open(config.model_path), config);
  if (config.backend == "cpu") {
    impl->backend = make_cpu_backend({.n_threads = config.n_threads, .exact_activations = config.exact_activations});
  } else if (config.backend == "cuda") {
    impl->backend = make_cuda_backend({.exact_activations = config.exact_activations});
  } else if (config.backend == "ref") {
    impl->backend = ref::make_backend(config.exact_activations);
  } else {
    fail("unknown backend '{}' (cpu, cuda, ref)", config.backend);
  }
  impl->model = load_model(impl->file, *impl->backend, {.max_batch_tokens = config.max_batch_tokens});
  if (config.on_tensor) {
    impl->model->set_debug_sink([cb = config.on_tensor](std::string_view name, const TensorView& t) {
      TERN_CHECK(t.dtype == DType::F32, "debug dump of {}: only f32 intermediates are named", name);
      std::vector<float> values;
      values.reserve(static_cast<size_t>(t.nelements()));
      for (int64_t i3 = 0; i3 < t.ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < t.ne[2]; ++i2)
          for (int64_t i1 = 0; i1 < t.ne[1]; ++i1) {
            const auto* r = static_cast<const float*>(t.row(i1, i2, i3));
            values.insert(values.end(), r, r + t.ne[0]);
          }
      cb(name, values, std::span<const int64_t>(t.ne));
    });
  }
  const ModelInfo& mi = impl->model->info();
  TERN_CHECK(static_cast<int64_t>(impl->tokenizer.n_vocab()) <= mi.n_vocab, "{}: tokenizer has {} tokens but the embedding only {}",
             config.model_path, impl->tokenizer.n_vocab(), mi.n_vocab);
  const int64_t n_ctx = config.n_ctx > 0 ? config.n_ctx : std::min<int64_t>(mi.n_ctx_train, 4096);
  TERN_CHECK(n_ctx <= (int64_t{1} << 20), "context size {} is too large", n_ctx);
  const int block_size = config.kv_block_size;
  TERN_CHECK(block_size >= 1 && block_size <= 256, "the KV block size must be in 1..256, got {}", block_size);
  const int ctx_blocks = static_cast<int>((n_ctx + block_size - 1) / block_size);
  const DType kv_type = parse_kv_type(config.kv_type);
  TERN_CHECK(mi.head_dim % traits(kv_type).block_elems == 0, "--kv-type {}: head size {} is not whole blocks of {}",
             config.kv_type, mi.head_dim, traits(kv_type).block_elems);
  const size_t block_bytes = static_cast<size_t>(2) * mi.n_layer * mi.n_kv_head * row_bytes(kv_type, mi.head_dim) * block_size;
  int64_t n_blocks = ctx_blocks;
  if (config.kv_memory == 0 && config.kv_memory_fraction > 0) {
    TERN_CHECK(config.kv_memory_fraction <= 1, "the KV memory fraction must be in (0, 1], got {}", config.kv_memory_fraction);
    const auto budget = static_cast<int64_t>(config.kv_memory_fraction * static_cast<double>(impl->backend->available_memory()));
    n_blocks = std::clamp<int64_t>(budget / static_cast<int64_t>(block_bytes), ctx_blocks,
                                   static_cast<int64_t>(ctx_blocks) * std::max(config.max_running, 1));
  } else if (config.kv_memory > 0) {
    n_blocks = static_cast<int64_t>(config.kv_memory / block_bytes);
    TERN_CHECK(n_blocks >= ctx_blocks, "--kv-memory {} MiB holds {} tokens, less than one context of {} ({} MiB)",
               config.kv_memory >> 20, n_blocks * block_size, n_ctx, (ctx_blocks * block_bytes + (1 << 20) - 1) >> 20);
    TERN_CHECK(n_blocks <= (int64_t{1} << 30), "--kv-memory {} is too large", config.kv_memory);
  }
  TERN_CHECK(config.max_running > 0, "max_running must be positive, got {}", config.max_running);
  impl->kv_storage = std::make_unique<KvStorage>(KvStorageConfig{.n_layer = mi.n_layer,
                                                                 .n_kv_head = mi.n_kv_head,
                                                                 .head_dim = mi.head_dim,
                                                                 .block_size = block_size,
                                                                 .n_blocks = static_cast<int>(n_blocks),
                                                                 .dtype = kv_type},
                                                    *impl->backend);
  impl->kv = std::make_unique<kv::KvCache>(static_cast<int32_t>(n_blocks), block_size);
  impl->scheduler = std::make_unique<Scheduler>(
      SchedulerConfig{.max_batch_tokens = config.max_batch_tokens,
                      .max_running = config.max_running,
                      .prefix_caching = config.prefix_caching,
                      .watermark_blocks = static_cast<int32_t>(n_blocks / 100),
                      .lookahead_slots = config.speculative.method.empty() ? 0 : spec_k_max(config.speculative)},
      *impl->kv);
  impl->logits.resize(mi.n_vocab);
  impl->chat_template = std::string(impl->file.find_string("tokenizer.chat_template").value_or(""));
  auto& s = impl->summary;
  s.path = config.model_path;
  s.arch = mi.arch;
  s.name = mi.name;
  s.n_vocab = mi.n_vocab;
  s.n_ctx_train = mi.n_ctx_train;
  s.n_ctx = static_cast<int>(n_ctx);
  s.n_layer = mi.n_layer;
  s.weight_bytes = mi.weight_bytes;
  s.decode_weight_bytes = mi.decode_weight_bytes;
  s.matmul_params = mi.matmul_params;
  s.kv_bytes = impl->kv_storage->bytes();
  s.kv_bytes_per_token = block_bytes / block_size;
  s.backend = std::string(impl->backend->name());
  s.n_threads = config.n_threads > 0 ? config.n_threads : default_thread_count();
  impl->setup_speculation();
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

const ModelSummary& Engine::summary() const { return impl_->summary; }

std::vector<int32_t> Engine::tokenize(std::string_view text, bool add_special, bool parse_special) const {
  return impl_->tokenizer.encode(text, add_special, parse_special);
}

std::string Engine::detokenize(std::span<const int32_t> ids) const { return impl_->tokenizer.decode(ids); }

std::string Engine::token_text(int32_t id) const { return impl_->tokenizer.decode(std::span<const int32_t>(&id, 1)); }

bool Engine::has_chat_template() const { return !impl_->chat_template.empty(); }

std::string Engine::apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  TERN_CHECK(has_chat_template(), "{}: the model has no chat template (tokenizer.chat_template)", impl_->summary.path);
  nlohmann::json j = nlohmann::json::array();
  for (const auto& m : messages) j.push_back({{"role", m.role}, {"content", m.content}});
  return render_chat(impl_->chat_template, impl_->tokenizer, j, add_generation_prompt);
}

Engine::PassTiming Engine::time_passes(std::span<const int32_t> prompt, int n_gen, int depth) {
  Impl& m = *impl_;
  m.require_idle("time_passes");
  m.check_prompt(prompt);
  TERN_CHECK(depth >= 0 && n_gen >= 0 && static_cast<int64_t>(depth) + n_gen < m.summary.n_ctx &&
                 static_cast<int64_t>(depth) + static_cast<int64_t>(prompt.size()) <= m.summary.n_ctx,
             "depth {} with {} prompt and {} generated tokens does not fit the context of {}", depth, prompt.size(),
             n_gen, m.summary.n_ctx);
  using clock = std::chrono::steady_clock;
  const size_t chunk = static_cast<size_t>(m.config.max_batch_tokens);
  // Tokens [0, n) of `ids` at positions from `pos0`, in batches, logits of the last row only.
  auto prefill = [&](kv::SeqBlocks& s, std::span<const int32_t> ids, int32_t pos0) {
    for (size_t b = 0; b < ids.size(); b += chunk) {
      const size_t e = std::min(ids.size(), b + chunk);
      m.run_private(s, ids.subspan(b, e - b), pos0 + static_cast<int32_t>(b), e - b - 1, m.logits.data());
    }
  };
  // The context before each timed part: the prompt's tokens repeated up to `depth`.
  auto fill_depth = [&](kv::SeqBlocks& s) {
    for (int32_t pos = 0; pos < depth;) {
      const size_t n = std::min(prompt.size(), static_cast<size_t>(depth - pos));
      prefill(s, prompt.first(n), pos);
      pos += static_cast<int32_t>(n);
    }
  };
  PassTiming t;
  kv::SeqBlocks s;
  fill_depth(s);
  auto t0 = clock::now();
  prefill(s, prompt, depth);
  t.prompt_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  m.kv->free(s);
  fill_depth(s);
  int32_t tok = prompt[0];
  t0 = clock::now();
  // Greedy, as a request with temperature 0 decodes: the best logit picked where the logits are.
  const bool top = m.config.sample_from_top_logits;
  for (int32_t pos = depth; pos < depth + n_gen; ++pos) {
    m.run_private(s, std::span<const int32_t>(&tok, 1), pos, 0, m.logits.data(), top ? 1 : 0);
    tok = top ? m.top_ids[0] : static_cast<int32_t>(argmax(m.logits));
  }
  t.gen_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  m.kv->free(s);
  return t;
}

std::vector<float> Engine::logits(std::span<const int32_t> ids, size_t first_row) {
  Impl& m = *impl_;
  m.require_idle("logits");
  m.check_prompt(ids);
  TERN_CHECK(first_row < ids.size(), "logits from row {} of {} tokens", first_row, ids.size());
  const int64_t V = m.summary.n_vocab;
  std::vector<float> out(static_cast<size_t>(V) * (ids.size() - first_row));
  kv::SeqBlocks s;
  const size_t chunk = static_cast<size_t>(m.config.max_batch_tokens);
  for (size_t b = 0; b < ids.size(); b += chunk) {
    const size_t e = std::min(ids.size(), b + chunk);
    if (e <= first_row) {  // no logits wanted: only the KV cache of this chunk (its last row's logits go to scratch)
      m.run_private(s, ids.subspan(b, e - b), static_cast<int32_t>(b), e - b - 1, m.logits.data());
      continue;
    }
    const size_t first = std::max(b, first_row);
    m.run_private(s, ids.subspan(b, e - b), static_cast<int32_t>(b), first - b, out.data() + (first - first_row) * V);
  }
  m.kv->free(s);
  return out;
}

}  // namespace tern
