// The boundary between tern and its CUDA backend module (libtern_cuda.so).
//
// The CUDA backend links cuBLAS and the CUDA runtime. Linked into the tern executable, they cost
// every process about 200 MiB of resident memory at start-up (the dynamic loader relocates
// cuBLAS's data), whether it uses the GPU or not. So the backend is a module that
// cuda_loader.cpp loads with dlopen on the first request for the CUDA backend, and a CPU run
// never maps it.
//
// The module carries its own copies of the code it uses from tern's lower layers (core, quant, the
// op checks), with their symbols kept local, and meets the program only through this table and the
// Backend interface. Both sides must come from one build: kCudaModuleAbi and the sizes below are
// compared on loading, and a mismatch is refused with a message naming the module file.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "backends/cuda/cuda_backend.h"
#include "core/log.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace tern {

// Bumped whenever the Backend interface or the structures passed through it change.
inline constexpr int kCudaModuleAbi = 1;

struct CudaModuleApi {
  int abi;
  size_t config_size, tensor_view_size, attention_args_size;  // sizeof on the module's side
  std::string (*unavailable_reason)();
  std::unique_ptr<Backend> (*make_backend)(const CudaBackendConfig& config, LogLevel level);
};

inline CudaModuleApi cuda_module_layout() {
  return {kCudaModuleAbi, sizeof(CudaBackendConfig), sizeof(TensorView), sizeof(AttentionArgs), nullptr, nullptr};
}

// The module's one exported symbol.
inline constexpr const char* kCudaModuleEntry = "tern_cuda_module_api";

// Implemented by the backend's sources (cuda_backend.cpp), inside the module.
std::string cuda_module_unavailable_reason();
std::unique_ptr<Backend> cuda_module_make_backend(const CudaBackendConfig& config);

}  // namespace tern

extern "C" const tern::CudaModuleApi* tern_cuda_module_api();
