// The emulated device's memory (memory.h): one mapping per allocation, its protection, and the
// SIGSEGV handler that tells a tracked first write from a misuse.
#include "backends/cuda/emulator/memory.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "backends/cuda/emulator/emulator.h"

namespace tern::cuda::emu {

bool kernels_enabled();  // runtime.cpp

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kPoisonLimit = size_t{64} << 20;

struct Allocation {
  uint8_t* base;  // the mapping: [base, base + span), its last page inaccessible
  size_t span;
  uint8_t* data;  // what the caller got: [data, data + bytes)
  size_t bytes;
  bool pinned;
  bool kernel_written;  // opened (read-write) by the first device write
};

std::recursive_mutex g_lock;
std::map<uintptr_t, Allocation> g_allocations;  // by data address
bool g_hidden = false;                           // a checked block's code before its wait is running

int protection(const Allocation& a) {
  if (a.pinned) return PROT_READ | PROT_WRITE;
  if (g_hidden) return a.kernel_written ? PROT_NONE : PROT_READ;
  return a.kernel_written ? PROT_READ | PROT_WRITE : PROT_READ;
}

void protect(const Allocation& a) { mprotect(a.base, a.span - kPage, protection(a)); }

Allocation* containing(const void* p) {
  const auto at = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocations.upper_bound(at);
  if (it == g_allocations.begin()) return nullptr;
  --it;
  Allocation& a = it->second;
  return at < reinterpret_cast<uintptr_t>(a.base + a.span - kPage) ? &a : nullptr;
}

void say(const char* what, const void* addr) {
  char msg[320];
  int n;
  if (in_kernel()) {
    const ThreadState& t = self();
    n = std::snprintf(msg, sizeof msg, "cuda emulator: thread (%u, %u, %u) of block (%u, %u, %u) %s %p\n", t.thread_idx.x,
                      t.thread_idx.y, t.thread_idx.z, t.block_idx.x, t.block_idx.y, t.block_idx.z, what, addr);
  } else {
    n = std::snprintf(msg, sizeof msg, "cuda emulator: device work outside a kernel %s %p\n", what, addr);
  }
  if (n > 0) (void)!write(2, msg, static_cast<size_t>(std::min(n, static_cast<int>(sizeof msg) - 1)));
}

void on_fault(int sig, siginfo_t* info, void*) {
  const Unchecked unchecked;  // the emulator's bookkeeping (emulator.h)
  Allocation* a = containing(info->si_addr);
  if (a && !a->kernel_written && !g_hidden) {
    // The first write by device work: tracked, then allowed (the access is retried).
    a->kernel_written = true;
    protect(*a);
    return;
  }
  if (a && g_hidden)
    say(a->kernel_written
            ? "touched memory that kernels write, before its wait_for_inputs() (griddepcontrol.wait): the "
              "kernel before it may still be writing it; at"
            : "wrote to device memory before its wait_for_inputs() (griddepcontrol.wait), while the kernel before "
              "it may still read it; at",
        info->si_addr);
  else
    say("touched memory outside every device allocation (past the end of one?) at", info->si_addr);
  signal(sig, SIG_DFL);  // the access faults again and the process ends as it would have
}

void install_handler() {
  static const bool done = [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, nullptr);
    return true;
  }();
  (void)done;
}

// [dst, dst + n) writable for the runtime's own write, then as before.
template <class F>
void host_write(void* dst, size_t n, F&& write) {
  const std::lock_guard lock(g_lock);
  Allocation* a = n ? containing(dst) : nullptr;
  const bool opened = a && !a->pinned && !a->kernel_written;
  if (opened) mprotect(a->base, a->span - kPage, PROT_READ | PROT_WRITE);
  write();
  if (opened) protect(*a);
}

}  // namespace

void* device_alloc(size_t bytes, bool pinned) {
  install_handler();
  const size_t n = (std::max<size_t>(bytes, 1) + 15) / 16 * 16;
  const size_t span = (n + kPage - 1) / kPage * kPage + kPage;
  void* m = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  auto* base = static_cast<uint8_t*>(m);
  mprotect(base + span - kPage, kPage, PROT_NONE);
  uint8_t* p = base + (span - kPage - n);
  // Fresh device memory holds garbage on the GPU: NaNs here, so that reading it before writing shows.
  // Without kernels, zeros: the token ids the host reads back stay valid.
  if (n <= kPoisonLimit) std::memset(p, kernels_enabled() ? 0xFF : 0, n);
  const std::lock_guard lock(g_lock);
  Allocation& a = g_allocations[reinterpret_cast<uintptr_t>(p)] = {base, span, p, n, pinned, false};
  protect(a);
  return p;
}

void device_free(void* p) {
  if (!p) return;
  const std::lock_guard lock(g_lock);
  const auto it = g_allocations.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_allocations.end()) return;
  munmap(it->second.base, it->second.span);
  g_allocations.erase(it);
}

void host_copy(void* dst, const void* src, size_t n) {
  host_write(dst, n, [&] {
    if (n) std::memmove(dst, src, n);
  });
}

void host_fill(void* dst, int value, size_t n) {
  host_write(dst, n, [&] { std::memset(dst, value, n); });
}

void hide_kernel_outputs(bool hide) {
  const std::lock_guard lock(g_lock);
  if (g_hidden == hide) return;
  g_hidden = hide;
  for (auto& [at, a] : g_allocations)
    if (!a.pinned && a.kernel_written) protect(a);  // the others are read-only either way
}

}  // namespace tern::cuda::emu
