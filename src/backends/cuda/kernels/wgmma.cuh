// Hopper's warpgroup matrix products (wgmma, sm_90a): a warpgroup of 4 warps computes a 64 x N tile,
// A (64 x 16, f16) from registers as four mma.m16n8k16 A fragments per warp (warp w holds rows
// 16w .. 16w + 15), B (16 x N, f16) from shared memory through a descriptor, f32 accumulators laid
// out as mma.m16n8 tiles per warp (d[t] = columns 8t .. 8t + 7, rows g and g + 8). Compiled for
// sm_90a only; elsewhere the functions are empty and must not be called (flash_wgmma() in launch.h
// says whether the device runs them).
//
// Shared-memory operands here use the layout without swizzling, in 8 x 8 core matrices of 128
// contiguous bytes (8 rows of 16 bytes). PTX ISA, "Shared Memory Matrix Layout": for both K-major
// and MN-major operands the leading byte offset (LBO) is the distance between core matrices
// adjacent along K and the stride byte offset (SBO) the distance between core matrices adjacent
// along M or N.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#ifdef TERN_CUDA_EMULATE
#include "backends/cuda/emulator/warp_matrix.h"
#endif

namespace tern::cuda {

// Descriptor of a shared-memory operand without swizzling (start address, LBO and SBO in bytes,
// multiples of 16).
__device__ __forceinline__ uint64_t wgmma_desc(const void* smem, uint32_t lbo, uint32_t sbo) {
  const uint64_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return ((addr & 0x3FFFF) >> 4) | (static_cast<uint64_t>((lbo & 0x3FFFF) >> 4) << 16) |
         (static_cast<uint64_t>((sbo & 0x3FFFF) >> 4) << 32);
}

// A tile of rows of D halves (keys by dims, as K and V tiles are) in core matrices: the rows of
// group r / 8 lie in D / 8 core matrices side by side (8 rows x 8 elements each). Halves from the
// tile's start to 16-byte piece c (elements 8c .. 8c + 7) of row r:
template <int D>
__device__ __forceinline__ int core_tile_offset(int r, int c) {
  return (r / 8) * 8 * D + c * 64 + (r % 8) * 8;
}
// ... as B = tile^T for the 16 dims from k0 (a multiple of 16) by every row (S = Q K^T): K-major,
// the next 8 dims 128 bytes on (LBO), the next 8 rows 16 D bytes on (SBO);
template <int D>
__device__ __forceinline__ uint64_t desc_rows_t(const __half* tile, int k0) {
  return wgmma_desc(tile + k0 * 8, 128, 16 * D);
}
// ... as B = rows r0 .. r0 + 15 (r0 a multiple of 16) of the tile by every dim (O += P V): MN-major,
// the next 8 rows 16 D bytes on (LBO, along k), the next 8 dims 128 bytes on (SBO, along n).
template <int D>
__device__ __forceinline__ uint64_t desc_rows(const __half* tile, int r0) {
  return wgmma_desc(tile + r0 * D, 16 * D, 128);
}

// Pins registers at this point of the program: an empty volatile asm that reads and writes them,
// which the compiler keeps in order with the fence and wait below, so that no ordinary instruction
// touching the accumulators or A fragments moves across them (the PTX rule: wgmma.fence between
// any other access to those registers and the wgmma, wgmma.wait_group before reading results).
template <int N>
__device__ __forceinline__ void wgmma_pin(float (&d)[N][4]) {
#if defined(__CUDA_ARCH__)
#pragma unroll
  for (int t = 0; t < N; ++t)
    asm volatile("" : "+f"(d[t][0]), "+f"(d[t][1]), "+f"(d[t][2]), "+f"(d[t][3])::"memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_pin(uint32_t (&a)[N][4]) {
#if defined(__CUDA_ARCH__)
#pragma unroll
  for (int t = 0; t < N; ++t) asm volatile("" : "+r"(a[t][0]), "+r"(a[t][1]), "+r"(a[t][2]), "+r"(a[t][3])::"memory");
#endif
}

// Orders this thread's register writes (A fragments, accumulators) before the wgmma that reads them.
__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// Returns when at most N committed groups are in flight; accumulators are readable after N = 0.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Makes this thread's ordinary writes to shared memory (cp.async included) visible to the tensor
// cores' reads (the async proxy); a barrier after it makes every thread's visible.
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

#ifdef TERN_CUDA_EMULATE
// The emulator's (emulator/warp_matrix.h): the layout below, as these descriptors describe it.
template <int kTransB, int N>
__device__ __forceinline__ void wgmma_m64k16(float (&d)[N][4], const uint32_t (&a)[4], uint64_t b, bool accumulate) {
  emu::wgmma_m64k16(d, a, b, accumulate, kTransB != 0);
}
#else
// d (+)= a b: 64 x N += (64 x 16) (16 x N), N = 64 or 128 (d's extent). accumulate = false writes
// a b alone. kTransB = 0: B K-major (B[k][n] with k contiguous: K's rows, n the key and k the dim);
// 1: MN-major (n contiguous: V's rows, k the key and n the dim).
template <int kTransB>
__device__ __forceinline__ void wgmma_m64k16(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b, bool accumulate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
      "{"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
      "}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
        "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
        "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
        "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
        "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
        "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(static_cast<int>(accumulate)), "n"(kTransB));
#endif
}

template <int kTransB>
__device__ __forceinline__ void wgmma_m64k16(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b, bool accumulate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
      "{"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, "
      "{%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
        "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
        "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
        "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
        "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
        "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
        "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]),
        "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
        "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]),
        "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
        "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]),
        "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
        "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),
        "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(static_cast<int>(accumulate)), "n"(kTransB));
#endif
}

#endif  // TERN_CUDA_EMULATE

}  // namespace tern::cuda
