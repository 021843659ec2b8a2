// Built when CUDA is off (-DTERN_CUDA=OFF or no nvcc found): the backend's factory says so.
#include "backends/cuda/cuda_backend.h"

#include "core/error.h"

namespace tern {

std::string cuda_unavailable_reason() { return "tern was built without CUDA (configure with -DTERN_CUDA=ON)"; }

std::unique_ptr<Backend> make_cuda_backend(const CudaBackendConfig&) { fail("cuda backend: {}", cuda_unavailable_reason()); }

}  // namespace tern
