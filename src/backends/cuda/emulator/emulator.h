// The CUDA emulator's executor: runs a kernel's grid on the host, so that the CUDA backend's kernels
// are tested against the reference on machines without a GPU (CI, and every session the GPU is not
// lent to). It checks what the kernels compute and how their threads cooperate, never their speed.
//
// Blocks run one after the other; a block's threads are fibers (each with its own stack) on the
// calling thread, switched only where CUDA threads wait for one another: __syncthreads,
// __syncwarp, the warp shuffles and votes, the warp-wide matrix instructions. So a kernel's data
// races between those points cannot show, but a barrier that not every thread of its group reaches
// deadlocks here as it would hang on the GPU, and is reported. Asynchronous copies (cp.async) land
// when the copying thread waits for them, not when issued: a kernel that reads a stage before its
// wait reads the stage's previous (or poisoned) bytes, as it might on the GPU.
//
// Device memory is host memory; dynamic shared memory is poisoned (0xA5) at each block's start.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

// ThreadSanitizer (the TERN_TSAN build) checks the kernels' threads against each other, not the
// emulator's own bookkeeping, which the fibers share with no happens-before edges of their own (see
// emulator.cpp): an Unchecked object hides what its thread does until it is destroyed.
#if defined(__SANITIZE_THREAD__)
extern "C" {
void AnnotateIgnoreReadsBegin(const char* file, int line);
void AnnotateIgnoreReadsEnd(const char* file, int line);
void AnnotateIgnoreWritesBegin(const char* file, int line);
void AnnotateIgnoreWritesEnd(const char* file, int line);
}
#endif

namespace tern::cuda::emu {

inline void unchecked_begin() {
#if defined(__SANITIZE_THREAD__)
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
#endif
}
inline void unchecked_end() {
#if defined(__SANITIZE_THREAD__)
  AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
#endif
}
struct Unchecked {
  Unchecked() { unchecked_begin(); }
  ~Unchecked() { unchecked_end(); }
  Unchecked(const Unchecked&) = delete;
  Unchecked& operator=(const Unchecked&) = delete;
};

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// body() once per thread of each block of `grid`, with `smem` bytes of dynamic shared memory.
// Throws tern::Error when a block deadlocks (a barrier some of its threads never reach).
// dependent: launched to overlap the kernel before it (programmatic dependent launch); the first
// two blocks and the last run their code before wait_for_inputs() with the memory kernels write
// out of reach (memory.h).
void run_grid(Dim3 grid, Dim3 block, size_t smem, bool dependent, const std::function<void()>& body);
bool in_kernel();

// In a kernel (the running fiber):
struct ThreadState {
  Dim3 thread_idx, block_idx, block_dim, grid_dim;
  unsigned lane = 0, warp = 0;
};
const ThreadState& self();
void* dynamic_smem();
void sync_block();
void sync_warp();
// Every lane of the warp puts `bytes` (at most kSlotBytes) from `mine`, then reads lane `from`'s
// into `out`: the shuffles, votes and matrix-fragment exchanges are built on it.
inline constexpr size_t kSlotBytes = 128;
void warp_exchange(const void* mine, size_t bytes, void* out, unsigned from);
// All 32 lanes' slots (32 x kSlotBytes) after every lane has put its own; valid until the lane's
// next exchange but one.
const uint8_t* warp_gather(const void* mine, size_t bytes);
// The same over the 128 threads of this thread's warpgroup (4 consecutive warps: wgmma).
const uint8_t* warpgroup_gather(const void* mine, size_t bytes);

// griddepcontrol.wait: in a checked block, returns once every thread of the block has got as far as
// it can without it (each is at its wait, at a barrier, or done).
void wait_for_inputs();

// cp.async: queued per thread, performed when the thread waits for its group (the source is
// touched at once, so that a copy asked for before the wait is checked as a load would be).
void async_copy(void* dst, const void* src, unsigned bytes, unsigned valid_bytes);
void async_commit();
void async_wait(int pending_allowed);

}  // namespace tern::cuda::emu
