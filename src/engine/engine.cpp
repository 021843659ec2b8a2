// The single-sequence engine of the foundation: prefill in chunks, then decode token by token.
// The serving issue replaces the loop with the scheduler; the model interface stays the same.
#include "tern/engine.h"

#include <algorithm>
#include <chrono>

#include "backends/cpu/cpu_backend.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/sampler.h"
#include "engine/stop_matcher.h"
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

struct Engine::Impl {
  gguf::File file;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
  std::unique_ptr<KvStorage> kv;
  Tokenizer tokenizer;
  std::string chat_template;
  ModelSummary summary;
  EngineConfig config;
  std::vector<int32_t> block_table;  // one sequence owning every block, in order
  std::vector<float> logits;         // [n_vocab]
  Batch batch;

  Impl(gguf::File f, const EngineConfig& c) : file(std::move(f)), tokenizer(Tokenizer::from_gguf(file)), config(c) {}

  // Runs tokens [begin, end) of `ids` at positions from `pos0`; logits of the last token if wanted.
  void run(std::span<const int32_t> ids, int32_t pos0, bool want_logits, float* out) {
    batch.clear();
    batch.seqs.push_back({block_table.data(), static_cast<int32_t>(block_table.size())});
    for (size_t i = 0; i < ids.size(); ++i) {
      batch.tokens.push_back(ids[i]);
      batch.positions.push_back(pos0 + static_cast<int32_t>(i));
      batch.token_seq.push_back(0);
    }
    if (want_logits) batch.logit_rows.push_back(static_cast<int32_t>(ids.size()) - 1);
    model->forward(batch, *kv, out);
  }

  // Prefill `ids` in chunks; leaves the last token's logits in `logits`.
  void prefill(std::span<const int32_t> ids) {
    const size_t chunk = static_cast<size_t>(config.max_batch_tokens);
    for (size_t b = 0; b < ids.size(); b += chunk) {
      const size_t e = std::min(ids.size(), b + chunk);
      run(ids.subspan(b, e - b), static_cast<int32_t>(b), e == ids.size(), logits.data());
    }
  }

  void check_prompt(std::span<const int32_t> ids) const {
    TERN_CHECK(!ids.empty(), "the prompt is empty");
    TERN_CHECK(static_cast<int64_t>(ids.size()) < summary.n_ctx,
               "the prompt has {} tokens, more than the context of {} allows (raise --ctx-size)", ids.size(),
               summary.n_ctx);
    for (int32_t id : ids)
      TERN_CHECK(id >= 0 && id < summary.n_vocab, "token id {} outside the vocabulary of {}", id, summary.n_vocab);
  }
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::load(const EngineConfig& config) {
  TERN_CHECK(config.max_batch_tokens > 0, "max_batch_tokens must be positive, got {}", config.max_batch_tokens);
  TERN_CHECK(config.n_threads >= 0, "threads must be >= 0, got {}", config.n_threads);
  TERN_CHECK(config.n_ctx >= 0, "context size must be >= 0, got {}", config.n_ctx);
  auto impl = std::make_unique<Impl>(gguf::File::open(config.model_path), config);
  if (config.backend == "cpu") {
    impl->backend = make_cpu_backend({.n_threads = config.n_threads, .exact_activations = config.exact_activations});
  } else if (config.backend == "ref") {
    impl->backend = ref::make_backend(config.exact_activations);
  } else {
    fail("unknown backend '{}' (cpu, ref)", config.backend);
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
  const int block_size = 16;
  const int n_blocks = static_cast<int>((n_ctx + block_size - 1) / block_size);
  impl->kv = std::make_unique<KvStorage>(KvStorageConfig{.n_layer = mi.n_layer,
                                                         .n_kv_head = mi.n_kv_head,
                                                         .head_dim = mi.head_dim,
                                                         .block_size = block_size,
                                                         .n_blocks = n_blocks,
                                                         .dtype = DType::F16});
  impl->block_table.resize(n_blocks);
  for (int i = 0; i < n_blocks; ++i) impl->block_table[i] = i;
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
  s.kv_bytes = impl->kv->bytes();
  s.kv_bytes_per_token = impl->kv->bytes() / static_cast<size_t>(n_blocks * block_size);
  s.backend = std::string(impl->backend->name());
  s.n_threads = config.n_threads > 0 ? config.n_threads : default_thread_count();
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

GenerateResult Engine::generate(const GenerateRequest& req, const std::function<bool(const StreamChunk&)>& on_chunk) {
  Impl& m = *impl_;
  m.check_prompt(req.prompt);
  TERN_CHECK(req.max_tokens >= 0, "max_tokens must be >= 0, got {}", req.max_tokens);
  Sampler sampler(req.sampling);
  StopMatcher stops(req.stop);
  Detokenizer detok(m.tokenizer);
  GenerateResult res;
  std::vector<int32_t> history(req.prompt.begin(), req.prompt.end());

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  m.prefill(req.prompt);
  const auto t1 = clock::now();
  res.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();

  res.finish = FinishReason::Length;
  auto emit = [&](int32_t tok, const std::string& text) {
    res.text += text;
    return !on_chunk || on_chunk(StreamChunk{tok, text});
  };
  int32_t pos = static_cast<int32_t>(req.prompt.size());
  for (int i = 0; i < req.max_tokens; ++i) {
    const int32_t tok = sampler.sample(m.logits, history);
    if (!req.ignore_eos && m.tokenizer.is_eog(tok)) {
      res.finish = FinishReason::Eos;
      break;
    }
    res.tokens.push_back(tok);
    history.push_back(tok);
    const std::string text = stops.push(detok.feed(tok));
    if (!emit(tok, text)) {
      res.finish = FinishReason::Cancelled;
      break;
    }
    if (stops.stopped()) {
      res.finish = FinishReason::Stop;
      break;
    }
    if (i + 1 == req.max_tokens) break;
    if (pos >= m.summary.n_ctx) {
      res.finish = FinishReason::Context;
      break;
    }
    m.run(std::span<const int32_t>(&tok, 1), pos++, true, m.logits.data());
  }
  if (res.finish != FinishReason::Stop && res.finish != FinishReason::Cancelled) {
    const std::string tail = stops.push(detok.flush()) + stops.flush();
    if (!tail.empty()) emit(res.tokens.empty() ? -1 : res.tokens.back(), tail);
  }
  res.generate_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

Engine::PassTiming Engine::time_passes(std::span<const int32_t> prompt, int n_gen) {
  Impl& m = *impl_;
  m.check_prompt(prompt);
  TERN_CHECK(n_gen >= 0 && n_gen < m.summary.n_ctx, "{} generated tokens do not fit the context of {}", n_gen,
             m.summary.n_ctx);
  using clock = std::chrono::steady_clock;
  PassTiming t;
  auto t0 = clock::now();
  m.prefill(prompt);
  t.prompt_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  int32_t tok = prompt[0];
  t0 = clock::now();
  for (int32_t pos = 0; pos < n_gen; ++pos) {
    m.run(std::span<const int32_t>(&tok, 1), pos, true, m.logits.data());
    tok = static_cast<int32_t>(std::max_element(m.logits.begin(), m.logits.end()) - m.logits.begin());
  }
  t.gen_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return t;
}

std::vector<float> Engine::logits(std::span<const int32_t> ids) {
  Impl& m = *impl_;
  m.check_prompt(ids);
  const int64_t V = m.summary.n_vocab;
  std::vector<float> out(static_cast<size_t>(V) * ids.size());
  // Every row of each chunk is asked for, so all positions come back.
  const size_t chunk = static_cast<size_t>(m.config.max_batch_tokens);
  for (size_t b = 0; b < ids.size(); b += chunk) {
    const size_t e = std::min(ids.size(), b + chunk);
    m.batch.clear();
    m.batch.seqs.push_back({m.block_table.data(), static_cast<int32_t>(m.block_table.size())});
    for (size_t i = b; i < e; ++i) {
      m.batch.tokens.push_back(ids[i]);
      m.batch.positions.push_back(static_cast<int32_t>(i));
      m.batch.token_seq.push_back(0);
      m.batch.logit_rows.push_back(static_cast<int32_t>(i - b));
    }
    m.model->forward(m.batch, *m.kv, out.data() + b * V);
  }
  return out;
}

}  // namespace tern
