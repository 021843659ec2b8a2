// The memory of the KV cache: per layer, K and V tensors [head_dim, n_kv_head, n_blocks * block_size],
// allocated once from the backend that computes on it. Which sequence owns which block is host-side
// logic (src/kv, the engine).
#pragma once

#include <cstdint>
#include <memory>

#include "ops/backend.h"

namespace tern {

struct KvStorageConfig {
  int n_layer = 0;
  int n_kv_head = 0;
  int head_dim = 0;
  int block_size = 16;
  int n_blocks = 0;
  DType dtype = DType::F16;
};

class KvStorage {
 public:
  // On the host backends the buffer is an anonymous mapping: zero pages, committed when first
  // written, so a large budget costs memory only as far as it is used.
  KvStorage(const KvStorageConfig& c, Backend& backend);
  KvStorage(const KvStorage&) = delete;
  KvStorage& operator=(const KvStorage&) = delete;
  const KvStorageConfig& config() const { return config_; }
  TensorView k(int layer) const { return view(layer, 0); }
  TensorView v(int layer) const { return view(layer, 1); }
  size_t bytes() const { return buffer_->size(); }
  // Copies slots [0, n_slots) of block `src` to block `dst` in every layer's K and V (copy-on-write).
  void copy_block(int32_t src, int32_t dst, int32_t n_slots);

 private:
  TensorView view(int layer, int which) const;
  KvStorageConfig config_;
  Backend& backend_;
  size_t tensor_bytes_ = 0;
  std::unique_ptr<Buffer> buffer_;
};

}  // namespace tern
