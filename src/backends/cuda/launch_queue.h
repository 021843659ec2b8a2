// The launches of one forward pass, recorded and then run as a CUDA graph when the same launches
// were seen before (a decode step looks like the one before it: same kernels, same arguments, only
// the staged inputs' contents differ), else eagerly. Replaying a graph costs one launch instead of
// hundreds (30 layers of a dozen kernels each), which is most of a small model's decode step.
//
// A launch is a closure over plain values (pointers into device or pinned memory, sizes), so the
// record is its bytes and two passes are the same when their records are. Launches that cannot be
// captured (cuBLAS) make their pass run eagerly. A graph is captured the second time a pass's
// records repeat, so one-off shapes never pay for capturing.
//
// TERN_CUDA_TIMING=1 times every pass on the device with events (first launch to last) and prints
// the mean per graph replay and per eager pass when the queue goes: set against the wall time of a
// decode step, it shows what the host's share of a step is.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

namespace tern::cuda {

class LaunchQueue {
 public:
  LaunchQueue(cudaStream_t stream, bool graphs);
  ~LaunchQueue();
  LaunchQueue(const LaunchQueue&) = delete;
  LaunchQueue& operator=(const LaunchQueue&) = delete;

  // Launches from now until run() are recorded.
  void begin() { recording_ = true; }
  bool recording() const { return recording_; }

  // f(stream): recorded, or run at once outside a pass.
  template <class F>
  void launch(const F& f, bool capturable = true) {
    static_assert(std::is_trivially_copyable_v<F> && sizeof(F) <= kBlob, "a launch captures plain values only");
    if (!recording_) {
      f(stream_);
      return;
    }
    if (n_ == records_.size()) records_.emplace_back();
    Record& r = records_[n_++];
    std::memset(r.blob, 0, sizeof r.blob);  // padding compares equal
    new (r.blob) F(f);
    r.size = sizeof(F);
    r.capturable = capturable;
    r.run = [](const std::byte* b, cudaStream_t s) { (*std::launder(reinterpret_cast<const F*>(b)))(s); };
  }

  // Runs what was recorded (a cached graph, a new one, or eagerly) and stops recording.
  void run();

  int64_t graph_launches() const { return graph_launches_; }
  int64_t graphs_captured() const { return graphs_captured_; }

 private:
  static constexpr size_t kBlob = 256;
  static constexpr size_t kMaxGraphs = 16;
  struct Record {
    void (*run)(const std::byte*, cudaStream_t) = nullptr;
    uint16_t size = 0;
    bool capturable = true;
    alignas(16) std::byte blob[kBlob];
    bool operator==(const Record& o) const {
      return run == o.run && size == o.size && std::memcmp(blob, o.blob, size) == 0;
    }
  };
  struct Graph {
    uint64_t hash = 0;
    std::vector<Record> records;
    cudaGraphExec_t exec = nullptr;
    uint64_t last_used = 0;
  };

  uint64_t hash() const;
  bool same(const Graph& g) const;
  void run_eagerly();
  Graph* capture(uint64_t h);
  void add_timing();  // the last timed pass's events, once they have completed
  void stop_timing(bool replay);

  // TERN_CUDA_TIMING: events around the pass in flight, and sums per kind of pass.
  struct Timing {
    cudaEvent_t start = nullptr, stop = nullptr;
    bool pending = false, replay = false;
    double ms[2] = {0, 0};  // eager passes, graph replays
    int64_t n[2] = {0, 0};
  };
  std::unique_ptr<Timing> timing_;

  cudaStream_t stream_;
  bool graphs_;
  bool recording_ = false;
  std::vector<Record> records_;  // storage reused from pass to pass
  size_t n_ = 0;                 // records of this pass
  std::vector<Graph> graphs_cache_;
  uint64_t last_hash_ = 0, uses_ = 0;
  int64_t graph_launches_ = 0, graphs_captured_ = 0;
};

}  // namespace tern::cuda
