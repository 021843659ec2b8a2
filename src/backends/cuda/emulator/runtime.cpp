// The part of the CUDA runtime and of cuBLAS that the CUDA backend calls, on the host, for the
// emulated module (libtern_cuda_emu.so links this instead of cudart and cuBLAS). Device memory is
// host memory; work on a stream runs at once and in order, or is recorded while the stream captures
// a graph and run each time the graph is launched, which is what the backend's launch queue relies
// on. The emulated device reports compute capability 9.0 (the Hopper kernels: wgmma, whose layout
// the emulator takes from wgmma.cuh; launches run in order, so programmatic dependent launch changes
// nothing) and 3 multiprocessors, so that grids sized by the SM count are small and uneven.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <new>
#include <vector>

#include "backends/cuda/emulator/launch.h"
#include "backends/cuda/emulator/memory.h"
#include "backends/cuda/kernels/launch.h"

struct CUstream_st {
  bool capturing = false;
  std::vector<std::function<void()>> captured;
};
struct CUgraph_st {
  std::vector<std::function<void()>> work;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> work;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point at;
};
struct cublasContext {
  cudaStream_t stream = nullptr;
};

namespace tern::cuda::emu {

void submit(cudaStream_t s, std::function<void()> work) {
  if (s && s->capturing) s->captured.push_back(std::move(work));
  else work();
}

bool kernels_enabled() {
  static const bool on = env_switch("TERN_CUDA_EMULATOR_KERNELS", true);
  return on;
}

namespace {

constexpr int kMultiprocessors = 3;
constexpr size_t kMemory = size_t{4} << 30;  // what cudaMemGetInfo reports: 4 GiB, half free

}  // namespace
}  // namespace tern::cuda::emu

using tern::cuda::emu::submit;

cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = tern::cuda::emu::device_alloc(bytes, false);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int) {
  *p = tern::cuda::emu::device_alloc(bytes, true);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) { return cudaHostAlloc(p, bytes, 0); }
cudaError_t cudaFree(void* p) {
  tern::cuda::emu::device_free(p);
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) { return cudaFree(p); }

cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind) {
  tern::cuda::emu::host_copy(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind, cudaStream_t s) {
  submit(s, [=] { tern::cuda::emu::host_copy(dst, src, n); });
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int v, size_t n) {
  tern::cuda::emu::host_fill(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t s) {
  submit(s, [=] { tern::cuda::emu::host_fill(p, v, n); });
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) {
  *s = new CUstream_st;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  return s && s->capturing ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  if (!s || s->capturing) return cudaErrorIllegalState;
  s->capturing = true;
  s->captured.clear();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  if (!s || !s->capturing) return cudaErrorIllegalState;
  s->capturing = false;
  *g = new CUgraph_st{std::move(s->captured)};
  s->captured.clear();
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  *e = new CUgraphExec_st{g->work};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  for (const auto& w : e->work) submit(s, w);
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  submit(s, [e] { e->at = std::chrono::steady_clock::now(); });
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int) {
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *v = tern::cuda::emu::kMultiprocessors; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = 227 << 10; return cudaSuccess;
    default: return cudaErrorInvalidValue;
  }
}
cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  *total = tern::cuda::emu::kMemory;
  *free = tern::cuda::emu::kMemory / 2;
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }
cudaError_t cudaGetLastError() { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory (emulated device)";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorIllegalState: return "operation not permitted in this capture state";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    default: return "error of the emulated device";
  }
}

// --- cuBLAS: the GEMMs the backend runs (f32 result, f32 accumulation) ------------------------------

cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}

namespace {

float element(const void* p, cudaDataType t, size_t i) {
  switch (t) {
    case CUDA_R_32F: return static_cast<const float*>(p)[i];
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(p)[i]);
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return 0.0f;
  }
}

}  // namespace

// Column-major C (m x n) = alpha op(A) op(B) + beta C, op(A) m x k, op(B) k x n; alpha and beta f32
// on the host (the default pointer mode).
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType at, int lda, const void* B, cudaDataType bt,
                            int ldb, const void* beta, void* C, cudaDataType ct, int ldc, cublasComputeType_t,
                            cublasGemmAlgo_t) {
  const auto supported = [](cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; };
  if (ct != CUDA_R_32F || !supported(at) || !supported(bt) || ta == CUBLAS_OP_C || tb == CUBLAS_OP_C)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  submit(h->stream, [=] {
    auto* c = static_cast<float*>(C);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float s = 0.0f;
        for (int p = 0; p < k; ++p) {
          const size_t ai = ta == CUBLAS_OP_N ? static_cast<size_t>(p) * lda + i : static_cast<size_t>(i) * lda + p;
          const size_t bi = tb == CUBLAS_OP_N ? static_cast<size_t>(j) * ldb + p : static_cast<size_t>(p) * ldb + j;
          s += element(A, at, ai) * element(B, bt, bi);
        }
        float& out = c[static_cast<size_t>(j) * ldc + i];
        out = be == 0.0f ? al * s : al * s + be * out;
      }
  });
  return CUBLAS_STATUS_SUCCESS;
}
