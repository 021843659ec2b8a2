// The CPU backend: ops split by rows over one persistent thread pool; matmul dot products through the
// ISA variant chosen at run time (backends/cpu/isa.h), other ops still plain C++.
#pragma once

#include <memory>
#include <optional>

#include "backends/cpu/isa.h"

#include "ops/backend.h"

namespace tern {

struct CpuBackendConfig {
  int n_threads = 0;  // 0: one per hardware thread
  bool exact_activations = false;  // F32 activations into matmuls instead of llama.cpp's 8-bit rounding
  std::optional<cpu::Isa> isa;      // kernel variant; default cpu::selected_isa()
};

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendConfig& config);

}  // namespace tern
