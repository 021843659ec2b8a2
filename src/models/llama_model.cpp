// The Llama family (Llama 1-3, SmolLM2, TinyLlama, Mistral without sliding window):
// RMSNorm -> attention (RoPE, GQA/MQA/MHA) -> residual -> RMSNorm -> SwiGLU FFN -> residual.
#include "models/llama_model.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "models/weights.h"

namespace tern {
namespace {

TensorView f32_view(std::vector<float>& buf, int64_t n0, int64_t n1) {
  return TensorView::contiguous(buf.data(), DType::F32, {n0, n1});
}

// A view of `t` seen as [n0, n1, n2] (same contiguous memory).
TensorView reshape3(const TensorView& t, int64_t n0, int64_t n1, int64_t n2) {
  return TensorView::contiguous(t.data, t.dtype, {n0, n1, n2});
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
  if (!output_.data) output_ = tok_embd_;  // tied embeddings
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
  const bool tied = output_.data == tok_embd_.data;
  info_.decode_weight_bytes = info_.weight_bytes - (tied ? 0 : tok_embd_.row_size() * static_cast<size_t>(info_.n_vocab));
  info_.matmul_params = info_.n_layer * (E * Q + 2 * E * KV + Q * E + 3 * E * info_.n_ff) + E * info_.n_vocab;

  // Workspace, sized once for the largest batch (no allocation in forward).
  const int64_t T = config_.max_batch_tokens;
  TERN_CHECK(T > 0, "max_batch_tokens must be positive");
  x_.resize(E * T);               // residual stream        [E, T]
  xb_.resize(E * T);              // normed / block output  [E, T]
  q_.resize(Q * T);               // queries                [H, n_head, T]
  k_.resize(KV * T);              // new keys               [H, n_kv_head, T]
  v_.resize(KV * T);              // new values             [H, n_kv_head, T]
  att_.resize(Q * T);             // attention output       [H, n_head, T]
  gate_.resize(info_.n_ff * T);   // FFN gate / activation  [n_ff, T]
  up_.resize(info_.n_ff * T);     // FFN up                 [n_ff, T]
  slots_.resize(T);               // KV slot of each token
  last_.resize(E * T);            // normed rows that need logits [E, R]
}

void LlamaModel::forward(const Batch& batch, KvStorage& kv, float* logits) {
  const int64_t T = batch.size();
  TERN_CHECK(T > 0 && T <= config_.max_batch_tokens, "batch of {} tokens outside 1..{}", T, config_.max_batch_tokens);
  const int64_t E = info_.n_embd, H = info_.head_dim;
  const auto& kc = kv.config();
  TERN_CHECK(kc.n_layer == info_.n_layer && kc.n_kv_head == info_.n_kv_head && kc.head_dim == H,
             "KV cache geometry does not match the model");
  for (int64_t t = 0; t < T; ++t) {
    const KvSeq& s = batch.seqs.at(batch.token_seq[t]);
    const int32_t pos = batch.positions[t];
    TERN_CHECK(pos >= 0 && pos < static_cast<int64_t>(s.n_blocks) * kc.block_size,
               "token {} at position {} has no KV block", t, pos);
    slots_[t] = static_cast<int32_t>(kv_slot(s, kc.block_size, pos));
  }

  TensorView x = f32_view(x_, E, T), xb = f32_view(xb_, E, T);
  TensorView q = f32_view(q_, H * info_.n_head, T), k = f32_view(k_, H * info_.n_kv_head, T);
  TensorView v = f32_view(v_, H * info_.n_kv_head, T), att = f32_view(att_, H * info_.n_head, T);
  TensorView gate = f32_view(gate_, info_.n_ff, T), up = f32_view(up_, info_.n_ff, T);

  backend_.get_rows(tok_embd_, batch.tokens.data(), T, x);
  emit("inp_embd", x);
  TERN_CHECK(batch.n_layers >= 0 && batch.n_layers <= info_.n_layer, "batch asks for {} of {} layers", batch.n_layers,
             info_.n_layer);
  const int n_layers = batch.n_layers > 0 ? batch.n_layers : info_.n_layer;
  char name[64];
  for (int l = 0; l < n_layers; ++l) {
    const Layer& L = layers_[l];
    auto named = [&](const char* what) {
      std::snprintf(name, sizeof name, "blk.%d.%s", l, what);
      return std::string_view(name);
    };
    // Attention block.
    backend_.rms_norm(x, L.attn_norm, hp_.eps, xb);
    emit(named("attn_norm"), xb);
    const TensorView qkv_w[] = {L.wq, L.wk, L.wv}, qkv[] = {q, k, v};
    backend_.matmul_group(qkv_w, xb, qkv);
    const TensorView q3 = reshape3(q, H, info_.n_head, T), k3 = reshape3(k, H, info_.n_kv_head, T);
    backend_.rope(q3, batch.positions.data(), hp_.rope);
    backend_.rope(k3, batch.positions.data(), hp_.rope);
    emit(named("q_rope"), q);
    emit(named("k_rope"), k);
    backend_.kv_store(k3, kv.k(l), slots_.data());
    backend_.kv_store(reshape3(v, H, info_.n_kv_head, T), kv.v(l), slots_.data());
    AttentionArgs a;
    a.q = q3;
    a.k = kv.k(l);
    a.v = kv.v(l);
    a.out = reshape3(att, H, info_.n_head, T);
    a.seqs = batch.seqs.data();
    a.token_seq = batch.token_seq.data();
    a.token_pos = batch.positions.data();
    a.block_size = kc.block_size;
    a.scale = 1.0f / std::sqrt(static_cast<float>(H));
    backend_.attention(a);
    emit(named("attn_kqv"), att);
    backend_.matmul(L.wo, att, xb);
    emit(named("attn_out"), xb);
    backend_.add(x, xb, x);
    // Feed-forward block.
    backend_.rms_norm(x, L.ffn_norm, hp_.eps, xb);
    emit(named("ffn_norm"), xb);
    const TensorView ffn_w[] = {L.w_gate, L.w_up}, ffn[] = {gate, up};
    backend_.matmul_group(ffn_w, xb, ffn);
    backend_.swiglu(gate, up, gate);
    emit(named("ffn_swiglu"), gate);
    backend_.matmul(L.w_down, gate, xb);
    emit(named("ffn_out"), xb);
    backend_.add(x, xb, x);
    emit(named("l_out"), x);
  }

  // Only the rows that need logits go through the final norm and the (large) output head.
  const int64_t R = static_cast<int64_t>(batch.logit_rows.size());
  if (R == 0) return;
  TensorView last = f32_view(last_, E, R);
  for (int64_t r = 0; r < R; ++r) {
    const int32_t t = batch.logit_rows[r];
    TERN_CHECK(t >= 0 && t < T, "logit row {} outside the batch", t);
    std::memcpy(last.row(r), x.row(t), E * sizeof(float));
  }
  backend_.rms_norm(last, output_norm_, hp_.eps, last);
  emit("result_norm", last);
  const TensorView out = TensorView::contiguous(logits, DType::F32, {info_.n_vocab, R});
  backend_.matmul(output_, last, out);
  emit("result_output", out);
}

}  // namespace tern
