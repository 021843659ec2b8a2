// Included first (the compiler's -include) in every CUDA source of the emulated module
// (libtern_cuda_emu.so): the kernels compiled by the host compiler as C++ run on the emulator's
// executor (emulator.h). The CUDA headers' host mode gives the types (uint4, dim3, __half,
// __nv_bfloat16) and their conversions; this header gives what only device code has: the thread's
// coordinates, shared memory, barriers, warp shuffles and votes, and the integer and rounding
// intrinsics the kernels use, each with the device's result for every input the kernels give it.
#pragma once

#ifndef TERN_CUDA_EMULATE
#error "cuda_emu.h belongs to the emulated build (TERN_CUDA_EMULATE)"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backends/cuda/emulator/emulator.h"
#include "core/error.h"

// A static shared variable is one per program, which is one per block while blocks run one at a
// time. (Dynamic shared memory: TERN_DYNAMIC_SHARED in kernels/dependent_launch.cuh.)
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)

namespace tern::cuda::emu {
inline uint3 as_uint3(const Dim3& d) { return {d.x, d.y, d.z}; }
}  // namespace tern::cuda::emu

#define threadIdx (::tern::cuda::emu::as_uint3(::tern::cuda::emu::self().thread_idx))
#define blockIdx (::tern::cuda::emu::as_uint3(::tern::cuda::emu::self().block_idx))
#define blockDim (::tern::cuda::emu::as_uint3(::tern::cuda::emu::self().block_dim))
#define gridDim (::tern::cuda::emu::as_uint3(::tern::cuda::emu::self().grid_dim))

// Warp operations over every lane only (all the kernels use): a partial mask is refused rather
// than emulated wrongly.
inline void full_mask_only(unsigned mask) {
  if (mask != 0xffffffffu) ::tern::fail("cuda emulator: a warp operation with the partial mask {:#x}", mask);
}

inline void __syncthreads() { ::tern::cuda::emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  full_mask_only(mask);
  ::tern::cuda::emu::sync_warp();
}

// Every lane's v, and lane `from`'s back (the shuffles below differ only in `from`).
template <class T>
T shuffle_from(unsigned mask, T v, unsigned from) {
  full_mask_only(mask);
  static_assert(sizeof(T) <= ::tern::cuda::emu::kSlotBytes && std::is_trivially_copyable_v<T>);
  T r;
  ::tern::cuda::emu::warp_exchange(&v, sizeof v, &r, from);
  return r;
}
// Lanes whose source lies outside their width-lane segment keep their own value, as on the device.
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const unsigned lane = ::tern::cuda::emu::self().lane, w = static_cast<unsigned>(width);
  const unsigned from = lane ^ static_cast<unsigned>(lane_mask);
  return shuffle_from(mask, v, from / w == lane / w ? from : lane);
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const unsigned lane = ::tern::cuda::emu::self().lane, w = static_cast<unsigned>(width);
  return shuffle_from(mask, v, lane % w >= delta ? lane - delta : lane);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  full_mask_only(mask);
  const int mine = pred != 0;
  const uint8_t* slots = ::tern::cuda::emu::warp_gather(&mine, sizeof mine);
  unsigned bits = 0;
  for (unsigned l = 0; l < 32; ++l) {
    int v;
    std::memcpy(&v, slots + l * ::tern::cuda::emu::kSlotBytes, sizeof v);
    bits |= static_cast<unsigned>(v) << l;
  }
  return bits;
}
template <class T>
unsigned __match_any_sync(unsigned mask, T value) {
  full_mask_only(mask);
  const uint8_t* slots = ::tern::cuda::emu::warp_gather(&value, sizeof value);
  unsigned bits = 0;
  for (unsigned l = 0; l < 32; ++l) {
    T v;
    std::memcpy(&v, slots + l * ::tern::cuda::emu::kSlotBytes, sizeof v);
    if (v == value) bits |= 1u << l;
  }
  return bits;
}

// Fibers switch only at the barriers above, so a read-modify-write is atomic here; integers go
// through the compiler's atomics all the same, so that ThreadSanitizer (the TERN_TSAN build) sees
// them as atomic rather than as a race between a block's threads.
template <class T>
T atomicAdd(T* p, T v) {
  if constexpr (std::is_integral_v<T>) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
  } else {
    const T old = *p;
    *p = old + v;
    return old;
  }
}

inline int __popc(unsigned v) { return std::popcount(v); }
inline int __ffs(int v) { return v == 0 ? 0 : std::countr_zero(static_cast<unsigned>(v)) + 1; }
template <class T>
T __ldg(const T* p) {
  return *p;
}
// Compiled with -ffp-contract=off: a product is rounded before a following sum, as these intend.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline int __float2int_rn(float v) { return static_cast<int>(std::nearbyint(v)); }  // ties to even
inline float __uint_as_float(unsigned v) { return std::bit_cast<float>(v); }
inline unsigned __float_as_uint(float v) { return std::bit_cast<unsigned>(v); }
inline unsigned __vsub4(unsigned a, unsigned b) {  // per byte, modulo 256
  unsigned r = 0;
  for (int i = 0; i < 32; i += 8) r |= ((((a >> i) & 0xFF) - ((b >> i) & 0xFF)) & 0xFF) << i;
  return r;
}
inline int __dp4a(int a, int b, int c) {  // four signed byte products added to c
  for (int i = 0; i < 32; i += 8) c += static_cast<int8_t>((a >> i) & 0xFF) * static_cast<int8_t>((b >> i) & 0xFF);
  return c;
}
inline int __dp4a(unsigned a, unsigned b, unsigned c) {
  return __dp4a(static_cast<int>(a), static_cast<int>(b), static_cast<int>(c));
}
// A shared-memory address is the offset into the block's dynamic shared memory (what the wgmma
// descriptors carry, and the emulated wgmma reads back).
inline size_t __cvta_generic_to_shared(const void* p) {
  return static_cast<size_t>(static_cast<const uint8_t*>(p) - static_cast<const uint8_t*>(::tern::cuda::emu::dynamic_smem()));
}

// The device's integer min and max (any two arithmetic types: their common type).
template <class A, class B>
constexpr std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(b) < static_cast<C>(a) ? static_cast<C>(b) : static_cast<C>(a);
}
template <class A, class B>
constexpr std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(b) : static_cast<C>(a);
}

using std::isinf;
using std::isnan;

// The runtime's C++ overload for a kernel (cuda_runtime.h declares it for nvcc only).
template <class T>
cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}
