// The Llama family (Llama 1-3, SmolLM2, TinyLlama, Mistral without sliding window):
// RMSNorm -> attention (RoPE, GQA/MQA/MHA) -> residual -> RMSNorm -> SwiGLU FFN -> residual.
#include "models/llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "models/weights.h"

namespace tern {
namespace {

// The same contiguous memory seen with another shape.
TensorView reshape(const TensorView& t, std::initializer_list<int64_t> shape) {
  return TensorView::contiguous(t.data, t.dtype, shape, t.device);
}

// The first n columns of an F32 [rows, max columns] workspace view.
TensorView columns(const TensorView& t, int64_t n) { return reshape(t, {t.ne[0], n}); }

template <class T>
size_t staged_bytes(size_t n) {
  return (n * sizeof(T) + 255) / 256 * 256 + 256;  // a backend may align each staged array
}

}  // namespace

LlamaModel::LlamaModel(const gguf::File& file, Backend& backend, const ModelConfig& config)
    : backend_(backend), config_(config) {
  const std::string arch(file.get_string("general.architecture"));
  Hparams& hp = hp_;
  info_.arch = arch;
  info_.name = std::string(file.find_string("general.name").value_or(""));
  info_.n_embd = arch_int(file, arch, "embedding_length");
  info_.n_layer = static_cast<int>(arch_int(file, arch, "block_count"));
  info_.n_head = static_cast<int>(arch_int(file, arch, "attention.head_count"));
  info_.n_kv_head = static_cast<int>(arch_int_or(file, arch, "attention.head_count_kv", info_.n_head));
  info_.n_ff = arch_int(file, arch, "feed_forward_length");
  info_.n_ctx_train = arch_int(file, arch, "context_length");
  TERN_CHECK(info_.n_embd > 0 && info_.n_layer > 0 && info_.n_layer <= 4096 && info_.n_head > 0 &&
                 info_.n_kv_head > 0 && info_.n_ff > 0 && info_.n_ctx_train > 0,
             "{}: invalid {} hyperparameters (embedding {}, blocks {}, heads {}/{}, ffn {}, context {})", file.path(),
             arch, info_.n_embd, info_.n_layer, info_.n_head, info_.n_kv_head, info_.n_ff, info_.n_ctx_train);
  TERN_CHECK(info_.n_head % info_.n_kv_head == 0, "{}: {}.attention.head_count {} is not a multiple of head_count_kv {}",
             file.path(), arch, info_.n_head, info_.n_kv_head);
  info_.head_dim = static_cast<int>(arch_int_or(file, arch, "attention.key_length", info_.n_embd / info_.n_head));
  const int64_t v_dim = arch_int_or(file, arch, "attention.value_length", info_.head_dim);
  TERN_CHECK(v_dim == info_.head_dim && info_.head_dim > 0 && info_.head_dim % 2 == 0,
             "{}: head size {} (value {}) unsupported", file.path(), info_.head_dim, v_dim);
  hp.eps = static_cast<float>(arch_float_or(file, arch, "attention.layer_norm_rms_epsilon", 1e-5));
  hp.rope.theta_base = static_cast<float>(arch_float_or(file, arch, "rope.freq_base", 10000.0));
  hp.rope.n_rot = static_cast<int>(arch_int_or(file, arch, "rope.dimension_count", info_.head_dim));
  hp.rope.layout = RopeLayout::Normal;  // llama.cpp's converter permutes Q/K into this layout
  TERN_CHECK(hp.rope.n_rot > 0 && hp.rope.n_rot <= info_.head_dim && hp.rope.n_rot % 2 == 0,
             "{}: {}.rope.dimension_count {} invalid for head size {}", file.path(), arch, hp.rope.n_rot, info_.head_dim);

  const gguf::TensorInfo* embd = file.find_tensor("token_embd.weight");
  TERN_CHECK(embd, "{}: missing tensor 'token_embd.weight'", file.path());
  info_.n_vocab = embd->ne[1];

  const int64_t E = info_.n_embd, H = info_.head_dim, Q = H * info_.n_head, KV = H * info_.n_kv_head;
  WeightLoader w(file, backend);
  tok_embd_ = w.get("token_embd.weight", {E, info_.n_vocab});
  output_norm_ = w.get_f32("output_norm.weight", E);
  output_ = w.get_matmul("output.weight", {E, info_.n_vocab}, /*required=*/false);
  const bool tied = !output_.data;
  if (tied) {
    // Tied embeddings: one copy serves the head and the gathers. A backend that placed its own copy
    // of the table (a GPU's) has it already; on the host the table becomes the backend's matmul
    // copy (repacked rows: the head reads them whole every step, get_rows undoes one group per
    // row), and the file's pages are dropped.
    if (w.in_file(tok_embd_)) tok_embd_ = w.prepare(tok_embd_);
    output_ = tok_embd_;
  }
  layers_.resize(info_.n_layer);
  for (int l = 0; l < info_.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Layer& L = layers_[l];
    L.attn_norm = w.get_f32(p + "attn_norm.weight", E);
    L.wq = w.get_matmul(p + "attn_q.weight", {E, Q});
    L.wk = w.get_matmul(p + "attn_k.weight", {E, KV});
    L.wv = w.get_matmul(p + "attn_v.weight", {E, KV});
    L.wo = w.get_matmul(p + "attn_output.weight", {Q, E});
    L.ffn_norm = w.get_f32(p + "ffn_norm.weight", E);
    L.w_gate = w.get_matmul(p + "ffn_gate.weight", {E, info_.n_ff});
    L.w_up = w.get_matmul(p + "ffn_up.weight", {E, info_.n_ff});
    L.w_down = w.get_matmul(p + "ffn_down.weight", {info_.n_ff, E});
  }
  info_.weight_bytes = w.bytes_loaded();
  // A decode step reads every weight once, except the embedding table, of which it reads one row
  // (unless the table is also the output head).
  info_.decode_weight_bytes = info_.weight_bytes - (tied ? 0 : tok_embd_.row_size() * static_cast<size_t>(info_.n_vocab));
  info_.matmul_params = info_.n_layer * (E * Q + 2 * E * KV + Q * E + 3 * E * info_.n_ff) + E * info_.n_vocab;

  // Workspace, sized once for the largest batch (no allocation in forward). A host backend's matmul
  // writes logits straight into the caller's array; others write them here and copy them out.
  const int64_t T = config_.max_batch_tokens;
  TERN_CHECK(T > 0, "max_batch_tokens must be positive");
  const bool host = backend.device() == Device::CPU;
  struct Part {
    TensorView* view;
    int64_t rows;  // F32 [rows, T]
  };
  const Part parts[] = {
      {&work_.x, E},              // residual stream         [E, T]
      {&work_.xb, E},             // normed / block output   [E, T]
      {&work_.q, Q},              // queries                 [H, n_head, T]
      {&work_.k, KV},             // new keys                [H, n_kv_head, T]
      {&work_.v, KV},             // new values              [H, n_kv_head, T]
      {&work_.att, Q},            // attention output        [H, n_head, T]
      {&work_.gate, info_.n_ff},  // FFN gate / activation   [n_ff, T]
      {&work_.up, info_.n_ff},    // FFN up                  [n_ff, T]
      {&work_.last, E},           // normed rows that need logits [E, R]
      {&work_.logits, host ? 0 : info_.n_vocab},  // logits [n_vocab, R] (device backends)
  };
  size_t total = 0;
  for (const Part& p : parts) total += (static_cast<size_t>(p.rows * T) * sizeof(float) + 255) / 256 * 256;
  work_buf_ = backend.alloc(total);
  auto* base = static_cast<uint8_t*>(work_buf_->data());
  for (const Part& p : parts) {
    *p.view = TensorView::contiguous(base, DType::F32, {p.rows, T}, backend.device());
    base += (static_cast<size_t>(p.rows * T) * sizeof(float) + 255) / 256 * 256;
  }
  slots_.resize(T);  // KV slot of each token
}

void LlamaModel::trace(std::string_view name, const TensorView& t) {
  if (!debug_) return;
  if (t.device == Device::CPU) {
    emit(name, t);
    return;
  }
  dump_.resize(static_cast<size_t>(t.nelements()));
  backend_.to_host(dump_.data(), t.data, dump_.size() * sizeof(float));
  emit(name, TensorView::contiguous(dump_.data(), DType::F32, {t.ne[0], t.ne[1], t.ne[2], t.ne[3]}));
}

void LlamaModel::forward(const Batch& batch, KvStorage& kv, float* logits, int32_t* top_ids) {
  const int64_t T = batch.size();
  TERN_CHECK(T > 0 && T <= config_.max_batch_tokens, "batch of {} tokens outside 1..{}", T, config_.max_batch_tokens);
  const int64_t H = info_.head_dim, R = static_cast<int64_t>(batch.logit_rows.size());
  const auto& kc = kv.config();
  TERN_CHECK(kc.n_layer == info_.n_layer && kc.n_kv_head == info_.n_kv_head && kc.head_dim == H,
             "KV cache geometry does not match the model");
  TERN_CHECK(batch.n_layers >= 0 && batch.n_layers <= info_.n_layer, "batch asks for {} of {} layers", batch.n_layers,
             info_.n_layer);
  size_t stage_bytes = 4 * staged_bytes<int32_t>(static_cast<size_t>(T)) + staged_bytes<int32_t>(static_cast<size_t>(R)) +
                       staged_bytes<KvSeq>(batch.seqs.size());
  for (const KvSeq& s : batch.seqs) stage_bytes += staged_bytes<int32_t>(static_cast<size_t>(s.n_blocks));
  for (int64_t t = 0; t < T; ++t) {
    const KvSeq& s = batch.seqs.at(batch.token_seq[t]);
    const int32_t pos = batch.positions[t];
    TERN_CHECK(pos >= 0 && pos < static_cast<int64_t>(s.n_blocks) * kc.block_size,
               "token {} at position {} has no KV block", t, pos);
    slots_[t] = static_cast<int32_t>(kv_slot(s, kc.block_size, pos));
  }
  for (int32_t r : batch.logit_rows) TERN_CHECK(r >= 0 && r < T, "logit row {} outside the batch", r);
  const int32_t top = batch.logit_top_k;
  TERN_CHECK(top >= 0 && top <= kMaxTopLogits && top <= info_.n_vocab && (top == 0 || top_ids),
             "batch asks for the {} best logits per row (0..{}, with somewhere to put their ids)", top,
             std::min<int64_t>(kMaxTopLogits, info_.n_vocab));

  // The pass's integer inputs, where the backend's ops read them; block tables are staged per
  // sequence so that the sequence descriptors the kernels see point at the staged copies.
  backend_.begin_pass(stage_bytes);
  const int32_t* tokens = backend_.stage(std::span(batch.tokens));
  const int32_t* positions = backend_.stage(std::span(batch.positions));
  const int32_t* token_seq = backend_.stage(std::span(batch.token_seq));
  const int32_t* slots = backend_.stage(std::span<const int32_t>(slots_.data(), static_cast<size_t>(T)));
  const int32_t* logit_rows = backend_.stage(std::span(batch.logit_rows));
  seqs_.resize(batch.seqs.size());
  for (size_t i = 0; i < seqs_.size(); ++i) {
    const KvSeq& s = batch.seqs[i];
    seqs_[i] = {backend_.stage(std::span(s.block_table, static_cast<size_t>(s.n_blocks))), s.n_blocks};
  }
  const KvSeq* seqs = backend_.stage(std::span<const KvSeq>(seqs_));

  const Workspace& w = work_;
  const TensorView x = columns(w.x, T), xb = columns(w.xb, T), q = columns(w.q, T), k = columns(w.k, T);
  const TensorView v = columns(w.v, T), att = columns(w.att, T), gate = columns(w.gate, T), up = columns(w.up, T);

  backend_.get_rows(tok_embd_, tokens, T, x);
  trace("inp_embd", x);
  const int n_layers = batch.n_layers > 0 ? batch.n_layers : info_.n_layer;
  char name[64];
  for (int l = 0; l < n_layers; ++l) {
    const Layer& L = layers_[l];
    auto named = [&](const char* what) {  // formatted only when traced: 200 snprintf cost 7 us a step
      if (!debug_) return std::string_view();
      std::snprintf(name, sizeof name, "blk.%d.%s", l, what);
      return std::string_view(name);
    };
    // Attention block. From the second layer on, the norm ran with the previous layer's residual
    // add (below).
    const TensorView qkv_w[] = {L.wq, L.wk, L.wv}, qkv[] = {q, k, v};
    if (l == 0) backend_.rms_norm_for(x, L.attn_norm, hp_.eps, xb, qkv_w);
    trace(named("attn_norm"), xb);
    backend_.matmul_group(qkv_w, xb, qkv);
    const TensorView q3 = reshape(q, {H, info_.n_head, T}), k3 = reshape(k, {H, info_.n_kv_head, T});
    backend_.rope_qk_store(q3, k3, reshape(v, {H, info_.n_kv_head, T}), positions, hp_.rope, kv.k(l), kv.v(l), slots);
    trace(named("q_rope"), q);
    trace(named("k_rope"), k);
    AttentionArgs a;
    a.q = q3;
    a.k = kv.k(l);
    a.v = kv.v(l);
    a.out = reshape(att, {H, info_.n_head, T});
    a.seqs = seqs;
    a.token_seq = token_seq;
    a.token_pos = positions;
    a.block_size = kc.block_size;
    a.scale = 1.0f / std::sqrt(static_cast<float>(H));
    backend_.attention(a);
    trace(named("attn_kqv"), att);
    backend_.matmul(L.wo, att, xb);
    trace(named("attn_out"), xb);
    // Feed-forward block: the residual add and its norm as one op.
    const TensorView ffn_w[] = {L.w_gate, L.w_up};
    backend_.add_rms_norm_for(x, xb, L.ffn_norm, hp_.eps, xb, ffn_w);
    trace(named("ffn_norm"), xb);
    backend_.matmul_swiglu(L.w_gate, L.w_up, xb, gate, up, std::span(&L.w_down, 1));
    trace(named("ffn_swiglu"), gate);
    backend_.matmul(L.w_down, gate, xb);
    trace(named("ffn_out"), xb);
    if (l + 1 < n_layers) {
      // The next layer's attn_norm, rounded for its q/k/v weights.
      const Layer& N = layers_[l + 1];
      const TensorView next_qkv[] = {N.wq, N.wk, N.wv};
      backend_.add_rms_norm_for(x, xb, N.attn_norm, hp_.eps, xb, next_qkv);
    } else {
      backend_.add(x, xb, x);
    }
    trace(named("l_out"), x);
  }

  // Only the rows that need logits go through the final norm and the (large) output head.
  if (R == 0) return;
  const TensorView last = columns(w.last, R);
  backend_.get_rows(x, logit_rows, R, last);
  backend_.rms_norm(last, output_norm_, hp_.eps, last);
  trace("result_norm", last);
  const bool host = backend_.device() == Device::CPU;
  const TensorView out = host ? TensorView::contiguous(logits, DType::F32, {info_.n_vocab, R}) : columns(w.logits, R);
  backend_.matmul(output_, last, out);
  trace("result_output", out);
  if (top > 0) {  // the best of each row, selected where the rows are (out may be the caller's array)
    top_values_.resize(static_cast<size_t>(top * R));
    backend_.top_k(out, top, top_values_.data(), top_ids);
    std::copy(top_values_.begin(), top_values_.end(), logits);
    return;
  }
  if (!host) backend_.to_host(logits, out.data, static_cast<size_t>(info_.n_vocab * R) * sizeof(float));
}

}  // namespace tern
