// The entry point of libtern_cuda.so (see cuda_module.h).
#include "backends/cuda/cuda_module.h"

namespace {

std::unique_ptr<tern::Backend> make_backend(const tern::CudaBackendConfig& config, tern::LogLevel level) {
  tern::set_log_level(level);  // this module's copy of the logger follows the program's
  return tern::cuda_module_make_backend(config);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const tern::CudaModuleApi* tern_cuda_module_api() {
  static const tern::CudaModuleApi api = [] {
    tern::CudaModuleApi a = tern::cuda_module_layout();
    a.unavailable_reason = tern::cuda_module_unavailable_reason;
    a.make_backend = make_backend;
    return a;
  }();
  return &api;
}
