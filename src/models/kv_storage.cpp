#include "models/kv_storage.h"

#include "core/error.h"

namespace tern {

KvStorage::KvStorage(const KvStorageConfig& c, Backend& backend) : config_(c), backend_(backend) {
  TERN_CHECK(c.n_layer > 0 && c.n_kv_head > 0 && c.head_dim > 0 && c.block_size > 0 && c.n_blocks > 0,
             "KV cache: invalid geometry");
  TERN_CHECK(is_kv_type(c.dtype), "KV cache: type {} unsupported (f16, f32, q8_0, fp8_e4m3)", dtype_name(c.dtype));
  TERN_CHECK(c.head_dim % traits(c.dtype).block_elems == 0, "KV cache: head size {} is not whole {} blocks of {}",
             c.head_dim, dtype_name(c.dtype), traits(c.dtype).block_elems);
  tensor_bytes_ = row_bytes(c.dtype, c.head_dim) * c.n_kv_head * static_cast<size_t>(c.block_size) * c.n_blocks;
  buffer_ = backend.alloc(tensor_bytes_ * 2 * c.n_layer);
}

TensorView KvStorage::view(int layer, int which) const {
  TERN_CHECK(layer >= 0 && layer < config_.n_layer, "KV cache: layer {} out of range", layer);
  auto* p = static_cast<uint8_t*>(buffer_->data()) + (static_cast<size_t>(layer) * 2 + which) * tensor_bytes_;
  return TensorView::contiguous(p, config_.dtype,
                                {config_.head_dim, config_.n_kv_head,
                                 static_cast<int64_t>(config_.block_size) * config_.n_blocks},
                                backend_.device());
}

void KvStorage::copy_block(int32_t src, int32_t dst, int32_t n_slots) {
  const auto& c = config_;
  TERN_CHECK(src >= 0 && src < c.n_blocks && dst >= 0 && dst < c.n_blocks && n_slots >= 0 && n_slots <= c.block_size,
             "KV cache: copy of {} slots from block {} to {} out of range", n_slots, src, dst);
  const size_t slot_bytes = row_bytes(c.dtype, c.head_dim) * c.n_kv_head;
  const size_t block_bytes = slot_bytes * c.block_size;
  for (int l = 0; l < c.n_layer * 2; ++l) {
    auto* base = static_cast<uint8_t*>(buffer_->data()) + static_cast<size_t>(l) * tensor_bytes_;
    backend_.copy(base + dst * block_bytes, base + src * block_bytes, slot_bytes * n_slots);
  }
}

}  // namespace tern
