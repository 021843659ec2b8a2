// The emulator's executor (emulator.h): a block's threads as fibers with a hand-written context
// switch (x86-64), a barrier per warp and one per block, and each thread's queue of asynchronous
// copies.
#include "backends/cuda/emulator/emulator.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "backends/cuda/emulator/memory.h"
#include "core/error.h"

// Under ThreadSanitizer (the TERN_TSAN build), each fiber is a TSan fiber, and the points where CUDA
// threads synchronise are happens-before edges: a barrier's arrivals before its departures, a
// block's threads after the scheduler's set-up and before the next block. Between them the fibers
// switch without synchronising, so that two threads of a block touching the same bytes (shared
// memory above all) with no barrier between them are reported as a data race, as compute-sanitizer's
// racecheck would on a GPU. A switch order the emulator happens to use cannot hide it.
// The emulator's own bookkeeping (fiber states, barrier counts, the scheduler's flags) is shared by
// the fibers with no such edges, and is left out of TSan's view: the entry points the kernels call
// run Unchecked (emulator.h), and a fiber is unchecked from its block's end until its next block's
// code starts. The kernels' code, and the copies cp.async performs (perform), are what TSan checks.
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define TERN_EMU_TSAN 1
#endif

#if !defined(__x86_64__)
#error "the CUDA emulator switches fibers with x86-64 code"
#endif

// Saves the callee-saved registers and the stack pointer into *save, then resumes the fiber whose
// stack pointer is `to` (which was saved the same way, or laid out by start_stack below).
extern "C" void tern_emu_switch(void** save, void* to);
asm(R"(
  .text
  .globl tern_emu_switch
  .type tern_emu_switch, @function
tern_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size tern_emu_switch, .-tern_emu_switch
)");

namespace tern::cuda::emu {
namespace {

// Threads of a barrier's group still running, how many have arrived, and which round it is.
// sync[round % 2]: the round's synchronisation object under TSan (two, so that a thread already on
// to the next round, released there, gives nothing to one still leaving this round).
struct Group {
  int live = 0, arrived = 0;
  uint64_t round = 0;
  char sync[2] = {};
};

// What TSan is told (nothing in other builds): the happens-before edges, released at a
// synchronisation point and acquired after it, and which fiber runs next, right before each
// switch (a switch is no edge of its own: those are the barriers', the block start's and end's).
#ifdef TERN_EMU_TSAN
inline void hb_release(const void* token) { __tsan_release(const_cast<void*>(token)); }
inline void hb_acquire(const void* token) { __tsan_acquire(const_cast<void*>(token)); }
inline void tsan_switch(void* to) { __tsan_switch_to_fiber(to, __tsan_switch_to_fiber_no_sync); }
#else
inline void hb_release(const void*) {}
inline void hb_acquire(const void*) {}
inline void tsan_switch(void*) {}
#endif

struct Copy {
  void* dst;
  const void* src;
  unsigned bytes, valid;
};

struct Fiber {
  void* sp = nullptr;
  void* tsan = nullptr;  // its TSan fiber (TSan builds)
  ThreadState st;
  bool done = false;
  Group* waiting = nullptr;  // the barrier this fiber waits at, in round wait_round
  uint64_t wait_round = 0;
  std::vector<Copy> open;                 // cp.async since the last commit
  std::deque<std::vector<Copy>> groups;  // committed, oldest first
  unsigned exchanges = 0;                 // warp exchanges so far (which bank of slots is next)
  unsigned group_exchanges = 0;           // warpgroup exchanges so far
};

// Exchanges alternate between two banks of slots, so that one barrier per exchange suffices: a lane
// writes a bank again two exchanges later, after the barrier of the exchange between, which every
// lane reaches only once it has read this one.
struct Warp {
  Group group;
  alignas(16) uint8_t slots[2][32][kSlotBytes];
};
struct Warpgroup {
  Group group;
  alignas(16) uint8_t slots[2][128][kSlotBytes];
};

constexpr size_t kStackBytes = 256 << 10;
constexpr size_t kGuardBytes = 4096;

// Stacks are mapped once and reused by every block after.
struct StackPool {
  std::vector<uint8_t*> stacks;
  ~StackPool() {
    for (uint8_t* s : stacks) munmap(s, kStackBytes + kGuardBytes);
  }
  uint8_t* top(size_t i) {
    while (stacks.size() <= i) {
      void* p = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
      if (p == MAP_FAILED) fail("cuda emulator: cannot map a fiber stack");
      mprotect(p, kGuardBytes, PROT_NONE);  // an overflow faults instead of writing the next stack
      stacks.push_back(static_cast<uint8_t*>(p));
    }
    return stacks[i] + kStackBytes + kGuardBytes;
  }
};

struct BlockRun {
  std::vector<Fiber> fibers;
  bool checked = false;        // a dependent launch's block whose code before the wait is checked
  bool inputs_ready = false;   // its wait_for_inputs() has returned
  Group dependency;            // the threads at wait_for_inputs(), released when none can go on
  std::vector<std::unique_ptr<Warp>> warps;
  std::vector<std::unique_ptr<Warpgroup>> warpgroups;
  Group block;
  uint8_t* smem = nullptr;
  const std::function<void()>* body = nullptr;
  void* scheduler_sp = nullptr;
  void* scheduler_tsan = nullptr;  // the scheduler's TSan context (TSan builds)
  char block_start = 0;            // the scheduler's set-up, before a block's threads (TSan)
  char block_done = 0;             // every thread of a block, before the next block (TSan)
  Fiber* cur = nullptr;
};

// One grid runs at a time in a process (run_grid holds g_grid_lock), so the running block is a
// plain global: a thread_local costs a call per access in a dlopened module.
std::mutex g_grid_lock;
BlockRun* g_run = nullptr;
StackPool g_stacks;

// The next fiber after `from` (cyclically, `from` itself last) that can run, or null.
Fiber* runnable_after(BlockRun& r, const Fiber* from) {
  const size_t n = r.fibers.size(), at = from ? static_cast<size_t>(from - r.fibers.data()) : n - 1;
  for (size_t k = 1; k <= n; ++k) {
    Fiber& f = r.fibers[(at + k) % n];
    if (!f.done && (!f.waiting || f.waiting->round != f.wait_round)) return &f;
  }
  return nullptr;
}

// Switches from the running fiber (waiting, or done: never the next to run) straight to the next
// one that can run, or to the scheduler when none can (the block is done, or deadlocked). What the
// fiber did so far precedes the scheduler's next look at the block (its end, or a deadlock's
// report). `finished`: the fiber's last switch, made unchecked since its block's end (the check is
// back on, as TSan requires of a fiber it will destroy, only after the last access).
void switch_away(bool finished) {
  BlockRun& r = *g_run;
  hb_release(&r.block_done);
  Fiber* self = r.cur;
  Fiber* next = runnable_after(r, self);
  void* to_tsan = next ? next->tsan : r.scheduler_tsan;
  void* to_sp = next ? next->sp : r.scheduler_sp;
  if (next) {
    next->waiting = nullptr;
    r.cur = next;
  }
  void** save = &self->sp;
  if (finished) unchecked_end();
  tsan_switch(to_tsan);
  tern_emu_switch(save, to_sp);
}
void yield() { switch_away(false); }

void release(Group& g) {
  g.arrived = 0;
  ++g.round;
}

// The caller waits until every running thread of g has arrived; the last to arrive goes on at once.
void arrive(Group& g) {
  const char* token = &g.sync[g.round & 1];
  hb_release(token);
  if (++g.arrived >= g.live) {
    hb_acquire(token);
    return release(g);
  }
  Fiber& f = *g_run->cur;
  f.waiting = &g;
  f.wait_round = g.round;
  yield();
  hb_acquire(token);
}

void leave(Group& g) {
  --g.live;
  if (g.arrived > 0 && g.arrived >= g.live) release(g);
}

void perform(const std::vector<Copy>& copies) {
  for (const Copy& c : copies) {
    if (c.valid) std::memcpy(c.dst, c.src, c.valid);
    if (c.valid < c.bytes) std::memset(static_cast<uint8_t*>(c.dst) + c.valid, 0, c.bytes - c.valid);
  }
}

extern "C" void tern_emu_fiber_entry() {
  BlockRun& r = *g_run;
  Fiber& f = *r.cur;
  hb_acquire(&r.block_start);
  (*r.body)();
  // Copies still queued land (the GPU would complete them too).
  for (const auto& g : f.groups) perform(g);
  perform(f.open);
  f.groups.clear();
  f.open.clear();
  unchecked_begin();  // the bookkeeping below, and the last switch's: unseen
  f.done = true;
  leave(r.warps[f.st.warp]->group);
  leave(r.warpgroups[f.st.warp / 4]->group);
  leave(r.block);
  switch_away(true);
  __builtin_unreachable();
}

// A new fiber's stack, laid out as tern_emu_switch leaves a suspended one: six saved registers,
// then the return address (the entry), then a never-used return address for the entry itself, so
// that the entry starts with the stack alignment of a called function.
void* start_stack(uint8_t* top) {
  auto t = reinterpret_cast<uintptr_t>(top) & ~uintptr_t{15};
  auto** sp = reinterpret_cast<void**>(t);
  *--sp = nullptr;
  *--sp = reinterpret_cast<void*>(&tern_emu_fiber_entry);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  return sp;
}

void run_block(BlockRun& r, Dim3 grid, Dim3 block, Dim3 at) {
  const unsigned n = block.x * block.y * block.z;
  r.block = {.live = static_cast<int>(n)};
  const unsigned n_warps = (n + 31) / 32;
  for (unsigned w = 0; w < n_warps; ++w) r.warps[w]->group = {.live = static_cast<int>(std::min(32u, n - 32 * w))};
  for (unsigned w = 0; w < (n + 127) / 128; ++w)
    r.warpgroups[w]->group = {.live = static_cast<int>(std::min(128u, n - 128 * w))};
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = r.fibers[i];
    f.sp = start_stack(g_stacks.top(i));
    f.st = {.thread_idx = {i % block.x, (i / block.x) % block.y, i / (block.x * block.y)},
            .block_idx = at,
            .block_dim = block,
            .grid_dim = grid,
            .lane = i % 32,
            .warp = i / 32};
    f.done = false;
    f.waiting = nullptr;
    f.exchanges = 0;
    f.group_exchanges = 0;
  }
  r.inputs_ready = !r.checked;
  r.dependency = {.live = static_cast<int>(n) + 1};  // never complete by count: see below
  if (r.checked) hide_kernel_outputs(true);
  struct Show {
    BlockRun& r;
    ~Show() {
      if (!r.inputs_ready) hide_kernel_outputs(false);
    }
  } show{r};
  // The fibers pass control among themselves (yield); it comes back here when none can run.
  hb_release(&r.block_start);
  r.cur = nullptr;
  for (;;) {
    Fiber* next = runnable_after(r, r.cur);
    if (next) {
      next->waiting = nullptr;
      r.cur = next;
      tsan_switch(next->tsan);
      tern_emu_switch(&r.scheduler_sp, next->sp);
      continue;
    }
    if (std::all_of(r.fibers.begin(), r.fibers.begin() + n, [](const Fiber& f) { return f.done; })) {
      hb_acquire(&r.block_done);
      return;
    }
    if (!r.inputs_ready) {  // every thread has got as far as it can before the wait: the inputs are ready
      r.inputs_ready = true;
      release(r.dependency);
      hide_kernel_outputs(false);
      continue;
    }
    {
      hb_acquire(&r.block_done);  // the block's threads, suspended for good, before its cleanup
      unsigned at_block = 0, at_warp = 0;
      for (unsigned i = 0; i < n; ++i)
        if (!r.fibers[i].done) (r.fibers[i].waiting == &r.block ? at_block : at_warp) += 1;
      fail("cuda emulator: block ({}, {}, {}) deadlocked: {} threads wait at __syncthreads and {} at a warp barrier "
           "that the other threads of their group never reach",
           at.x, at.y, at.z, at_block, at_warp);
    }
  }
}

}  // namespace

void run_grid(Dim3 grid, Dim3 block, size_t smem, bool dependent, const std::function<void()>& body) {
  const Unchecked unchecked;  // the scheduler's side of the bookkeeping
  const std::lock_guard lock(g_grid_lock);
  TERN_CHECK(g_run == nullptr, "cuda emulator: a kernel launched from a kernel");
  const unsigned n = block.x * block.y * block.z;
  TERN_CHECK(n > 0 && n <= 1024, "cuda emulator: {} threads per block", n);
  BlockRun r;
  r.fibers.resize(n);
#ifdef TERN_EMU_TSAN
  r.scheduler_tsan = __tsan_get_current_fiber();
  for (Fiber& f : r.fibers) f.tsan = __tsan_create_fiber(0), f.done = true;  // (run_block clears done)
  struct Fibers {  // a deadlocked block's fibers stay suspended, unchecked: TSan would die of those
    BlockRun& r;
    ~Fibers() {
      for (Fiber& f : r.fibers)
        if (f.done) __tsan_destroy_fiber(f.tsan);
    }
  } tsan_fibers{r};
#endif
  for (unsigned w = 0; w < (n + 31) / 32; ++w) r.warps.push_back(std::unique_ptr<Warp>(new Warp));  // slots left unset
  for (unsigned w = 0; w < (n + 127) / 128; ++w) r.warpgroups.push_back(std::unique_ptr<Warpgroup>(new Warpgroup));
  std::unique_ptr<uint8_t[]> shared(new (std::align_val_t{128}) uint8_t[std::max<size_t>(smem, 16)]);
  r.smem = shared.get();
  r.body = &body;
  g_run = &r;
  struct Reset {
    ~Reset() { g_run = nullptr; }
  } reset;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        std::memset(r.smem, 0xA5, smem);
        const uint64_t linear = (static_cast<uint64_t>(z) * grid.y + y) * grid.x + x;
        const uint64_t n_blocks = static_cast<uint64_t>(grid.x) * grid.y * grid.z;
        r.checked = dependent && (linear < 2 || linear + 1 == n_blocks);
        run_block(r, grid, block, {x, y, z});
      }
}

const ThreadState& self() {
  const Unchecked unchecked;
  return g_run->cur->st;
}

bool in_kernel() {
  const Unchecked unchecked;
  return g_run && g_run->cur;
}

void wait_for_inputs() {
  const Unchecked unchecked;
  BlockRun& r = *g_run;
  if (r.inputs_ready) return;
  Fiber& f = *r.cur;
  f.waiting = &r.dependency;
  f.wait_round = r.dependency.round;
  yield();
}

void* dynamic_smem() {
  const Unchecked unchecked;
  return g_run->smem;
}

void sync_block() {
  const Unchecked unchecked;
  arrive(g_run->block);
}

void sync_warp() {
  const Unchecked unchecked;
  arrive(g_run->warps[g_run->cur->st.warp]->group);
}

const uint8_t* warp_gather(const void* mine, size_t bytes) {
  const Unchecked unchecked;
  Fiber& f = *g_run->cur;
  Warp& w = *g_run->warps[f.st.warp];
  auto& bank = w.slots[f.exchanges++ & 1];
  std::memcpy(bank[f.st.lane], mine, bytes);
  arrive(w.group);
  return &bank[0][0];
}

const uint8_t* warpgroup_gather(const void* mine, size_t bytes) {
  const Unchecked unchecked;
  Fiber& f = *g_run->cur;
  Warpgroup& w = *g_run->warpgroups[f.st.warp / 4];
  auto& bank = w.slots[f.group_exchanges++ & 1];
  const unsigned linear = f.st.warp * 32 + f.st.lane;
  std::memcpy(bank[linear % 128], mine, bytes);
  arrive(w.group);
  return &bank[0][0];
}

void warp_exchange(const void* mine, size_t bytes, void* out, unsigned from) {
  std::memcpy(out, warp_gather(mine, bytes) + (from % 32) * kSlotBytes, bytes);
}

void async_copy(void* dst, const void* src, unsigned bytes, unsigned valid_bytes) {
  const Unchecked unchecked;
  if (valid_bytes > 0) {  // touched now: a copy asked for before the wait is checked as a load
    const auto* p = static_cast<const volatile uint8_t*>(src);
    (void)p[0];
    (void)p[std::min(valid_bytes, bytes) - 1];
  }
  g_run->cur->open.push_back({dst, src, bytes, std::min(valid_bytes, bytes)});
}

void async_commit() {
  const Unchecked unchecked;
  Fiber& f = *g_run->cur;
  f.groups.push_back(std::move(f.open));
  f.open.clear();
}

// Checked: the copies are the kernel's writes to shared memory, and the queue is this fiber's own.
void async_wait(int pending_allowed) {
  Fiber& f = *g_run->cur;
  while (f.groups.size() > static_cast<size_t>(std::max(pending_allowed, 0))) {
    perform(f.groups.front());
    f.groups.pop_front();
  }
}

}  // namespace tern::cuda::emu
