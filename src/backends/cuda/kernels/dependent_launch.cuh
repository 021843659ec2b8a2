// Programmatic dependent launch (Hopper and later): a kernel of a decode step may be launched, and
// its blocks may start, while the kernel before it in the stream is still running. A step is
// hundreds of small kernels; launched one after the other, each pays the launch and its first
// round trip to memory with the GPU otherwise idle, which cost more than the GEMVs' streaming on
// the 1.1B shape. Overlapped, a GEMV's blocks ask for their weights (which no kernel writes) while
// the previous kernel finishes.
//
// The contract every kernel launched with launch_dependent keeps: it calls release_dependents()
// early (so the next kernel may start launching) and wait_for_inputs() before its first read of
// anything an earlier kernel wrote and before its first write. wait_for_inputs() returns once the
// previous kernel has completed and its writes are visible; since that kernel waited for its own
// predecessor, a kernel sees the writes of every kernel before it. Both calls are no-ops before
// sm_90 and when the kernel was launched without the attribute.
//
// TERN_CUDA_OVERLAP=0 launches without the attribute (to measure what it saves).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "backends/cuda/kernels/launch.h"

#ifdef TERN_CUDA_EMULATE
#include "backends/cuda/emulator/launch.h"
// Dynamic shared memory: the block's buffer (emulator.h).
#define TERN_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::tern::cuda::emu::dynamic_smem())
#else
#define TERN_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif

namespace tern::cuda {

__device__ __forceinline__ void release_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void wait_for_inputs() {
#if defined(TERN_CUDA_EMULATE)
  emu::wait_for_inputs();  // where the emulator checks what came before it (emulator/memory.h)
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Whether launches overlap: the device is sm_90 or later and TERN_CUDA_OVERLAP is not 0 (decided
// once per process).
bool overlap_launches();

// Whether a GEMV loads its weights (which no kernel writes) before it waits for its input.
// TERN_CUDA_PRELOAD=0 turns it off, to measure what it saves (decided once per process). (Asking L2
// for decode attention's V rows before its score phase the same way measured slower on an H100:
// 16 x 8192 positions 0.290 -> 0.329 ms.)
bool early_loads();

#ifdef TERN_CUDA_EMULATE
// The emulator runs every launch in stream order, to completion (emulator/launch.h).
template <class... Params, class... Args>
void launch_dependent(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                      Args&&... args) {
  emu::launch(what, true, kernel, grid, block, smem, s, std::forward<Args>(args)...);
}
template <class... Params, class... Args>
void launch_plain(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                  Args&&... args) {
  emu::launch(what, false, kernel, grid, block, smem, s, std::forward<Args>(args)...);
}
#else
// kernel<<<grid, block, smem, s>>>(args...), allowed to overlap the kernel before it.
template <class... Params, class... Args>
void launch_dependent(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                      Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = overlap_launches() ? 1 : 0;
  check(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...), what);
}
// kernel<<<grid, block, smem, s>>>(args...), after the kernel before it (no early start).
template <class... Params, class... Args>
void launch_plain(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                  Args&&... args) {
  kernel<<<grid, block, smem, s>>>(std::forward<Args>(args)...);
  check_launch(what);
}
#endif

}  // namespace tern::cuda
