// A kernel launch on the emulator: the arguments converted to the kernel's parameter types once (as
// the driver copies them), then the grid run in stream order: at once, or when the graph a capture
// is recording is launched (runtime.cpp).
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "backends/cuda/emulator/emulator.h"

namespace tern::cuda::emu {

// work() now, or recorded into the graph being captured on stream s.
void submit(cudaStream_t s, std::function<void()> work);
// TERN_CUDA_EMULATOR_KERNELS=0: launches run nothing (the results are garbage), so that what is
// left of a program's time is its host side: the engine, the backend, the launch queue.
bool kernels_enabled();

// How many launches of each dependent kernel have their code before wait_for_inputs() checked.
inline constexpr int kCheckedLaunches = 64;

// dependent: launched to overlap the kernel before it (launch_dependent).
template <class... Params, class... Args>
void launch(const char* what, bool dependent, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
            cudaStream_t s, Args&&... args) {
  (void)what;
  auto params = std::make_shared<std::tuple<std::decay_t<Params>...>>(std::forward<Args>(args)...);
  const Dim3 g{grid.x, grid.y, grid.z}, b{block.x, block.y, block.z};
  if (!kernels_enabled()) return;
  // The code before the wait is the same at every launch of a kernel: its first launches are
  // checked (run_grid's `dependent`), the later ones spared the page-protection changes.
  static std::atomic<int> checked_launches{0};  // per kernel instantiation (host threads may launch)
  const bool check = dependent && checked_launches.fetch_add(1, std::memory_order_relaxed) < kCheckedLaunches;
  submit(s, [=] { run_grid(g, b, smem, check, [&] { std::apply(kernel, *params); }); });
}

}  // namespace tern::cuda::emu
