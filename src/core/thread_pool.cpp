#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace tern {

namespace {

// Chunk `index` of `parts` over [0, n) in units of `grain` items.
void chunk(int64_t n, int64_t grain, int parts, int index, int64_t* begin, int64_t* end) {
  const int64_t units = (n + grain - 1) / grain;
  const int64_t base = units / parts, extra = units % parts;
  const int64_t ub = index * base + std::min<int64_t>(index, extra);
  const int64_t ue = ub + base + (index < extra ? 1 : 0);
  *begin = std::min(n, ub * grain);
  *end = std::min(n, ue * grain);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

using Clock = std::chrono::steady_clock;

// How long an idle worker spins before it sleeps: longer than the gap between two ops of a
// forward pass (or two decode steps), shorter than anything a user would notice as a busy core.
constexpr auto kWorkerSpin = std::chrono::microseconds(1000);
// How long the caller spins for the workers before it yields its core: short, because when the
// machine is oversubscribed (other processes, more threads than cores) the worker it waits for
// may need exactly this core.
constexpr auto kCallerSpin = std::chrono::microseconds(50);

// Spins with a pause hint until done() or `budget` has passed; true if done.
template <class Done>
bool spin_until(Done&& done, Clock::duration budget) {
  const auto start = Clock::now();
  for (int i = 1;; ++i) {
    if (done()) return true;
    cpu_relax();
    if ((i & 63) == 0 && Clock::now() - start > budget) return done();
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)), pieces_(static_cast<size_t>(n_threads_)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

namespace {

uint64_t pack(int64_t begin, int64_t end) { return static_cast<uint64_t>(begin) | static_cast<uint64_t>(end) << 32; }
int64_t lo(uint64_t r) { return static_cast<int64_t>(r & 0xFFFFFFFFu); }
int64_t hi(uint64_t r) { return static_cast<int64_t>(r >> 32); }

}  // namespace

void ThreadPool::run_chunk(int index) {
  if (job_stealing_) return run_pieces(index);
  int64_t b, e;
  chunk(job_n_, job_grain_, n_threads_, index, &b, &e);
  if (b < e) (*job_)(b, e);
}

// Own pieces from the front of the thread's range, then others' from the back of theirs.
void ThreadPool::run_pieces(int index) {
  const int64_t grain = job_grain_, n = job_n_;
  auto run_piece = [&](int64_t p) { (*job_)(p * grain, std::min(n, (p + 1) * grain)); };
  std::atomic<uint64_t>& own = pieces_[static_cast<size_t>(index)].range;
  for (uint64_t r = own.load(std::memory_order_acquire); lo(r) < hi(r);) {
    if (own.compare_exchange_weak(r, pack(lo(r) + 1, hi(r)), std::memory_order_acq_rel)) {
      run_piece(lo(r));
      r = own.load(std::memory_order_acquire);
    }
  }
  for (int k = 1; k < n_threads_; ++k) {
    std::atomic<uint64_t>& other = pieces_[static_cast<size_t>((index + k) % n_threads_)].range;
    for (uint64_t r = other.load(std::memory_order_acquire); lo(r) < hi(r);) {
      if (other.compare_exchange_weak(r, pack(lo(r), hi(r) - 1), std::memory_order_acq_rel)) {
        run_piece(hi(r) - 1);
        r = other.load(std::memory_order_acquire);
      }
    }
  }
}

void ThreadPool::run_grain(int64_t n, int64_t grain, const RangeFn& fn) { dispatch(n, grain, fn, false); }

void ThreadPool::run_stealing(int64_t n, int64_t grain, const RangeFn& fn) {
  grain = std::max<int64_t>(1, grain);
  dispatch(n, grain, fn, (n + grain - 1) / grain < (int64_t{1} << 31));  // piece numbers fit 32 bits
}

void ThreadPool::dispatch(int64_t n, int64_t grain, const RangeFn& fn, bool stealing) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (n_threads_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  job_grain_ = grain;
  job_stealing_ = stealing;
  if (stealing) {
    const int64_t pieces = (n + grain - 1) / grain;
    for (int i = 0; i < n_threads_; ++i) {
      int64_t b, e;
      chunk(pieces, 1, n_threads_, i, &b, &e);
      pieces_[static_cast<size_t>(i)].range.store(pack(b, e), std::memory_order_relaxed);
    }
  }
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  // seq_cst pairs with the worker's sleepers_ increment: either we see it and notify, or the
  // worker sees the new generation before it blocks.
  generation_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    wake_.notify_all();
  }
  run_chunk(0);
  auto finished = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(finished, kCallerSpin))
    while (!finished()) std::this_thread::yield();
  job_ = nullptr;
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    auto has_work = [&] { return generation_.load(std::memory_order_acquire) != seen || stop_.load(std::memory_order_relaxed); };
    if (!spin_until(has_work, kWorkerSpin)) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      wake_.wait(lock, [&] { return stop_.load() || generation_.load(std::memory_order_seq_cst) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    run_chunk(index);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

int default_thread_count() {
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

}  // namespace tern
