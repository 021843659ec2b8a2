#include "models/kv_storage.h"

#include "core/error.h"

namespace tern {

KvStorage::KvStorage(const KvStorageConfig& c) : config_(c) {
  TERN_CHECK(c.n_layer > 0 && c.n_kv_head > 0 && c.head_dim > 0 && c.block_size > 0 && c.n_blocks > 0,
             "KV cache: invalid geometry");
  TERN_CHECK(c.dtype == DType::F16 || c.dtype == DType::F32, "KV cache: type {} unsupported", dtype_name(c.dtype));
  tensor_bytes_ = row_bytes(c.dtype, c.head_dim) * c.n_kv_head * static_cast<size_t>(c.block_size) * c.n_blocks;
  data_.resize(tensor_bytes_ * 2 * c.n_layer);
}

TensorView KvStorage::view(int layer, int which) const {
  TERN_CHECK(layer >= 0 && layer < config_.n_layer, "KV cache: layer {} out of range", layer);
  auto* p = data_.data() + (static_cast<size_t>(layer) * 2 + which) * tensor_bytes_;
  return TensorView::contiguous(p, config_.dtype,
                                {config_.head_dim, config_.n_kv_head,
                                 static_cast<int64_t>(config_.block_size) * config_.n_blocks});
}

}  // namespace tern
