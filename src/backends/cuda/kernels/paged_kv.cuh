// Where position p of a sequence lies in the paged KV cache: slot block_table[p / block_size] *
// block_size + p % block_size (ops.h, kv_slot).
#pragma once

#include <cstdint>

#include "ops/ops.h"

namespace tern::cuda {

__device__ __forceinline__ int64_t slot_of(const KvSeq& s, int block_size, int p) {
  return static_cast<int64_t>(s.block_table[p / block_size]) * block_size + p % block_size;
}

}  // namespace tern::cuda
