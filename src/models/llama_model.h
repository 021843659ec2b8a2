#pragma once

#include <vector>

#include "models/model.h"

namespace tern {

class LlamaModel final : public Model {
 public:
  LlamaModel(const gguf::File& file, Backend& backend, const ModelConfig& config);
  const ModelInfo& info() const override { return info_; }
  void forward(const Batch& batch, KvStorage& kv, float* logits) override;

 private:
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
  TensorView output_;       // [E, n_vocab] (= tok_embd_ when tied)
  std::vector<Layer> layers_;
  std::vector<float> x_, xb_, q_, k_, v_, att_, gate_, up_, last_;
  std::vector<int32_t> slots_;
};

}  // namespace tern
