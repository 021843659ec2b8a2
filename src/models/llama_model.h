#pragma once

#include <vector>

#include "models/model.h"

namespace tern {

class LlamaModel final : public Model {
 public:
  LlamaModel(const gguf::File& file, Backend& backend, const ModelConfig& config);
  const ModelInfo& info() const override { return info_; }
  void forward(const Batch& batch, KvStorage& kv, float* logits, int32_t* top_ids = nullptr) override;

 private:
  // emit() for an intermediate in the backend's memory (copied to the host when it lives elsewhere).
  void trace(std::string_view name, const TensorView& t);
  struct Hparams {
    float eps = 1e-5f;
    RopeParams rope;
  };
  struct Layer {
    TensorView attn_norm;  // F32 [E]
    TensorView wq;         // [E, H * n_head]
    TensorView wk, wv;     // [E, H * n_kv_head]
    TensorView wo;         // [H * n_head, E]
    TensorView ffn_norm;   // F32 [E]
    TensorView w_gate;     // [E, n_ff]
    TensorView w_up;       // [E, n_ff]
    TensorView w_down;     // [n_ff, E]
  };

  Backend& backend_;
  ModelConfig config_;
  ModelInfo info_;
  Hparams hp_;
  TensorView tok_embd_;     // [E, n_vocab]
  TensorView output_norm_;  // F32 [E]
  TensorView output_;       // [E, n_vocab]; when tied, tok_embd_ itself or the backend's matmul copy of it
  std::vector<Layer> layers_;
  // Activations, in the backend's memory, sized once for the largest batch (no allocation in forward).
  struct Workspace {
    TensorView x, xb, q, k, v, att, gate, up, last, logits;  // F32, shapes at the largest batch
  };
  std::unique_ptr<Buffer> work_buf_;
  Workspace work_;
  // The pass's per-token integers gathered on the host before they are staged (Backend::stage).
  std::vector<int32_t> slots_;
  std::vector<KvSeq> seqs_;
  std::vector<float> dump_;  // debug dumps of intermediates the host cannot read directly
  std::vector<float> top_values_;  // the best logits of each row, on their way to the caller
};

}  // namespace tern
