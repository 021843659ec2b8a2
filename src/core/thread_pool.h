// One persistent pool of workers for parallel loops. Workers are created once; a parallel_for
// inside a forward pass creates no thread and allocates nothing.
//
// Workers spin (with a pause hint) for a short while after each job before they sleep on a
// condition variable: a decode step issues a few hundred small jobs a few microseconds apart, and
// a futex wake-up per job would cost more than the job itself. The caller spins for the others to
// finish for the same reason.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace tern {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads includes the calling thread
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // A borrowed callable fn(begin, end): the pool runs it while parallel_for waits, so nothing is
  // copied or allocated per call (a std::function would heap-allocate any lambda capturing more
  // than two references, once per op of every forward pass).
  class RangeFn {
   public:
    template <class F>
      requires(!std::is_same_v<std::remove_cvref_t<F>, RangeFn>)
    explicit RangeFn(F& f)
        : ctx_(const_cast<void*>(static_cast<const void*>(&f))),
          call_([](void* c, int64_t b, int64_t e) { (*static_cast<F*>(c))(b, e); }) {}
    void operator()(int64_t b, int64_t e) const { call_(ctx_, b, e); }

   private:
    void* ctx_;
    void (*call_)(void*, int64_t, int64_t);
  };

  // Calls fn(begin, end) over [0, n) split into contiguous chunks, one per thread, and waits.
  // The split depends only on n and the thread count, so results are deterministic.
  template <class F>
  void parallel_for(int64_t n, F&& fn) {
    run(n, RangeFn(fn));
  }

  // As parallel_for_grain, but in pieces of `grain` items, each thread starting at its chunk's
  // first piece and going forward; a thread done with its chunk takes the last piece still left
  // in another's, until none is left. For memory-bound loops (decode matmuls): a thread slowed
  // down (by another process, by its memory channel) leaves its last pieces to the other, where a
  // fixed split would leave half the memory bus idle while it finishes. fn is called per piece (once
  // for all of [0, n) with one thread or a single piece), and which thread runs a piece varies
  // from call to call.
  template <class F>
  void parallel_for_stealing(int64_t n, int64_t grain, F&& fn) {
    RangeFn f(fn);
    run_stealing(n, grain, f);
  }

  // Calls fn(i, i + 1) for every i in [0, n), handing items to whichever thread is free next: for
  // items of very different cost (causal attention tiles). Callers must not depend on which
  // thread runs an item.
  template <class F>
  void parallel_for_dynamic(int64_t n, F&& fn) {
    next_item_.store(0, std::memory_order_relaxed);
    auto grab = [&](int64_t, int64_t) {
      for (int64_t i; (i = next_item_.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i, i + 1);
    };
    run(std::min<int64_t>(n, n_threads_), RangeFn(grab));
  }

  // As parallel_for, but chunk boundaries are multiples of `grain` (except the end), so that a
  // chunk never splits a unit of `grain` items (e.g. interleaved weight rows).
  template <class F>
  void parallel_for_grain(int64_t n, int64_t grain, F&& fn) {
    RangeFn f(fn);
    run_grain(n, grain, f);
  }

 private:
  void run(int64_t n, RangeFn fn) { run_grain(n, 1, fn); }
  void run_grain(int64_t n, int64_t grain, const RangeFn& fn);
  void run_stealing(int64_t n, int64_t grain, const RangeFn& fn);
  void dispatch(int64_t n, int64_t grain, const RangeFn& fn, bool stealing);
  void run_pieces(int index);
  void worker(int index);
  void run_chunk(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  // Job slot, written by the caller before it bumps generation_ (release), read by workers after
  // they see the new generation (acquire).
  const RangeFn* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_grain_ = 1;
  bool job_stealing_ = false;
  // parallel_for_stealing's pieces still to run, per thread: [begin, end) as piece numbers in the
  // low and high 32 bits, each on its own cache line.
  struct alignas(64) Pieces {
    std::atomic<uint64_t> range{0};
  };
  std::vector<Pieces> pieces_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};   // workers still running the current job
  std::atomic<int> sleepers_{0};  // workers blocked (or about to block) on wake_
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> next_item_{0};  // parallel_for_dynamic's queue head
  std::mutex mu_;
  std::condition_variable wake_;
};

int default_thread_count();  // physical-ish core count, at least 1

}  // namespace tern
