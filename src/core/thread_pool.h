// One persistent pool of workers for parallel loops. Workers are created once; a parallel_for
// inside a forward pass creates no thread and allocates nothing.
#pragma once

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

 private:
  void run(int64_t n, RangeFn fn);
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const RangeFn* job_ = nullptr;
  int64_t job_n_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

int default_thread_count();  // physical-ish core count, at least 1

}  // namespace tern
