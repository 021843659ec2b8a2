// A loaded model: architecture-independent facts plus forward(batch). One implementation per
// architecture lives in its own file and is chosen by `general.architecture`.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "formats/gguf/gguf.h"
#include "models/batch.h"
#include "models/kv_storage.h"
#include "ops/backend.h"

namespace tern {

struct ModelInfo {
  std::string arch;
  std::string name;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  int64_t n_ff = 0;
  size_t weight_bytes = 0;         // bytes of all weight tensors used by forward
  size_t decode_weight_bytes = 0;  // bytes a one-token forward pass reads (all but the embedding table's other rows)
  int64_t matmul_params = 0;       // weights multiplied per token (2 flops each)
};

// Called with every named intermediate (e.g. "blk.3.attn_out") when set; for debugging dumps.
using DebugSink = std::function<void(std::string_view name, const TensorView& t)>;

struct ModelConfig {
  int max_batch_tokens = 512;  // workspace is sized once for this many tokens
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelInfo& info() const = 0;
  // Runs the batch, writes K/V of its tokens into `kv`, and writes logits for batch.logit_rows into
  // `logits` ([n_vocab, logit_rows.size()]); with batch.logit_top_k = k > 0, each row's k best
  // logits into `logits` ([k, rows]) and their token ids into `top_ids` ([k, rows]), in the order
  // sampling ranks them (core/top_k.h).
  virtual void forward(const Batch& batch, KvStorage& kv, float* logits, int32_t* top_ids = nullptr) = 0;
  void set_debug_sink(DebugSink sink) { debug_ = std::move(sink); }

 protected:
  void emit(std::string_view name, const TensorView& t) const {
    if (debug_) debug_(name, t);
  }
  DebugSink debug_;
};

// Picks the architecture from the file's metadata; throws naming an unsupported architecture or a
// tensor whose type or shape is wrong. The file must outlive the model (weights stay mmapped).
std::unique_ptr<Model> load_model(const gguf::File& file, Backend& backend, const ModelConfig& config);

}  // namespace tern
