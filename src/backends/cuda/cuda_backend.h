// The CUDA backend: every op of the Llama path on one NVIDIA GPU, weights and KV cache in device
// memory, one stream. Built with -DTERN_CUDA=ON (the default where CMake finds nvcc) as the module
// libtern_cuda.so, which make_cuda_backend() loads on first use (cuda_module.h); without CUDA it
// throws saying so.
#pragma once

#include <memory>
#include <string>

#include "ops/backend.h"

namespace tern {

struct CudaBackendConfig {
  int device = 0;
  // Decode-sized matmuls take f32 inputs instead of rounding them as the CPU backend (and
  // llama.cpp) do: 8-bit blocks for quantised weights, f16/bf16 for those types.
  bool exact_activations = false;
  // Prefill tokens (runs of at least this many consecutive tokens of one sequence) go through the
  // tensor-core FlashAttention kernel; others through the split-KV decode kernel. 0: default.
  int flash_min_tokens = 0;
  // Tokens per matmul above which quantised weights are dequantised to f16 for cuBLAS instead of
  // going through the GEMV kernels. 0: default.
  int gemm_min_tokens = 0;
  // Replay repeated passes (decode steps) as CUDA graphs; TERN_CUDA_GRAPHS=0 also turns it off.
  bool graphs = true;
};

// Empty when a CUDA device can be used; otherwise why not (built without CUDA, no device, driver
// error), for messages and for tests that skip.
std::string cuda_unavailable_reason();

std::unique_ptr<Backend> make_cuda_backend(const CudaBackendConfig& config);

}  // namespace tern
