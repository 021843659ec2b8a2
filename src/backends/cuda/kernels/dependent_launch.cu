// Whether kernels are launched to overlap the one before them, and issue their independent loads
// early (dependent_launch.cuh).
#include <cstdlib>
#include <cstring>

#include "backends/cuda/kernels/dependent_launch.cuh"

namespace tern::cuda {

bool overlap_launches() {
  static const bool on = [] {
    const char* env = std::getenv("TERN_CUDA_OVERLAP");
    if (env && std::strcmp(env, "0") == 0) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    return major >= 9;
  }();
  return on;
}

bool early_loads() {
  static const bool on = [] {
    const char* env = std::getenv("TERN_CUDA_PRELOAD");
    return !(env && std::strcmp(env, "0") == 0);
  }();
  return on;
}

}  // namespace tern::cuda
