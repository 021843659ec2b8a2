// The memory of the KV cache: per layer, K and V tensors [head_dim, n_kv_head, n_blocks * block_size],
// allocated once. Which sequence owns which block is host-side logic (src/kv, the engine).
#pragma once

#include <cstdint>

#include "core/tensor.h"

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
  explicit KvStorage(const KvStorageConfig& c);
  ~KvStorage();
  KvStorage(const KvStorage&) = delete;
  KvStorage& operator=(const KvStorage&) = delete;
  const KvStorageConfig& config() const { return config_; }
  TensorView k(int layer) const { return view(layer, 0); }
  TensorView v(int layer) const { return view(layer, 1); }
  size_t bytes() const { return bytes_; }
  // Copies slots [0, n_slots) of block `src` to block `dst` in every layer's K and V (copy-on-write).
  void copy_block(int32_t src, int32_t dst, int32_t n_slots);

 private:
  TensorView view(int layer, int which) const;
  KvStorageConfig config_;
  size_t tensor_bytes_ = 0;
  // Anonymous mapping: zero pages, committed when first written, so a large budget costs memory
  // only as far as it is used.
  uint8_t* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace tern
