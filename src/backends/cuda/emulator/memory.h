// The emulated device's memory: host pages, one mapping per allocation, with the page protections
// that let the emulator see two kinds of misuse as they happen.
//
// - Past the end: each allocation ends at most 15 bytes before an inaccessible page.
// - Programmatic dependent launch: a kernel launched to overlap the one before it may, before
//   wait_for_inputs() (griddepcontrol.wait), touch only memory no kernel writes (weights, inputs
//   copied from the host), since the kernels before it may still be running. Allocations start
//   read-only; the first write by device work (a kernel, an emulated cuBLAS call) marks the
//   allocation as kernel-written and opens it. While a checked block of a dependent launch runs
//   its code before the wait, every kernel-written allocation is inaccessible, and so is writing
//   any other.
// A fault of either kind names the thread, the block and the address, and ends the process.
#pragma once

#include <cstddef>

namespace tern::cuda::emu {

// pinned: host memory the host writes at will (cudaMallocHost): never protected.
void* device_alloc(size_t bytes, bool pinned);
void device_free(void* p);
// The runtime's own writes into device memory (copies, fills), which are not kernels'.
void host_copy(void* dst, const void* src, size_t n);
void host_fill(void* dst, int value, size_t n);
// The code of a dependent launch's block before its wait: kernel-written memory hidden or shown.
void hide_kernel_outputs(bool hide);

}  // namespace tern::cuda::emu
