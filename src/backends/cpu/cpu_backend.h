// The CPU backend: ops split by rows over one persistent thread pool. Its inner loops are plain C++
// for now; ISA-specific kernels (issue: CPU backend at the hardware limit) slot in behind the same
// interface.
#pragma once

#include <memory>

#include "ops/backend.h"

namespace tern {

struct CpuBackendConfig {
  int n_threads = 0;  // 0: one per hardware thread
  bool exact_activations = false;  // F32 activations into matmuls instead of llama.cpp's 8-bit rounding
};

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendConfig& config);

}  // namespace tern
