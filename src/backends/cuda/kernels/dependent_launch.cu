// Whether kernels are launched to overlap the one before them, and issue their independent loads
// early (dependent_launch.cuh); the environment switches that decide it (launch.h).
#include <climits>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/kernels/dependent_launch.cuh"

namespace tern::cuda {

bool env_switch(const char* name, bool fallback) {
  const char* env = std::getenv(name);
  if (env && std::strcmp(env, "0") == 0) return false;
  if (env && std::strcmp(env, "1") == 0) return true;
  return fallback;
}

int env_int(const char* name, int fallback) {
  const char* env = std::getenv(name);
  if (!env || !*env) return fallback;
  char* end = nullptr;
  const long v = std::strtol(env, &end, 10);
  return *end == '\0' && v >= INT_MIN && v <= INT_MAX ? static_cast<int>(v) : fallback;
}

bool overlap_launches() {
  static const bool on = [] {
    if (!env_switch("TERN_CUDA_OVERLAP", true)) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    return major >= 9;
  }();
  return on;
}

bool early_loads() {
  static const bool on = env_switch("TERN_CUDA_PRELOAD", true);
  return on;
}

}  // namespace tern::cuda
