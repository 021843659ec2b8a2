#include "backends/cuda/launch_queue.h"

#include <algorithm>
#include <cstdio>

#include "backends/cuda/kernels/launch.h"

namespace tern::cuda {

LaunchQueue::LaunchQueue(cudaStream_t stream, bool graphs) : stream_(stream), graphs_(graphs) {
  if (env_switch("TERN_CUDA_TIMING", false)) {
    timing_ = std::make_unique<Timing>();
    check(cudaEventCreate(&timing_->start), "timing event");
    check(cudaEventCreate(&timing_->stop), "timing event");
  }
}

LaunchQueue::~LaunchQueue() {
  for (Graph& g : graphs_cache_) cudaGraphExecDestroy(g.exec);
  if (!timing_) return;
  add_timing();
  for (int k = 1; k >= 0; --k)
    if (timing_->n[k] > 0)
      std::fprintf(stderr, "cuda backend: %lld %s, %.1f us each on the device (mean, events)\n",
                   static_cast<long long>(timing_->n[k]), k ? "graph replays" : "eager passes",
                   1000.0 * timing_->ms[k] / static_cast<double>(timing_->n[k]));
  cudaEventDestroy(timing_->start);
  cudaEventDestroy(timing_->stop);
}

void LaunchQueue::add_timing() {
  if (!timing_->pending) return;
  timing_->pending = false;
  float ms = 0;
  if (cudaEventSynchronize(timing_->stop) != cudaSuccess ||
      cudaEventElapsedTime(&ms, timing_->start, timing_->stop) != cudaSuccess)
    return;
  timing_->ms[timing_->replay] += ms;
  ++timing_->n[timing_->replay];
}

// Runs once per decode step over a few hundred records, so it mixes whole words (the blobs are
// zero-filled past their size, so the padding words hash alike).
uint64_t LaunchQueue::hash() const {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t w) { h = (h ^ w) * 1099511628211ull; };
  for (size_t i = 0; i < n_; ++i) {
    const Record& r = records_[i];
    mix(reinterpret_cast<uintptr_t>(r.run));
    uint64_t w[kBlob / 8];
    std::memcpy(w, r.blob, sizeof w);
    for (size_t k = 0; k < (r.size + 7u) / 8u; ++k) mix(w[k]);
  }
  return h;
}

bool LaunchQueue::same(const Graph& g) const {
  if (g.records.size() != n_) return false;
  for (size_t i = 0; i < n_; ++i)
    if (!(g.records[i] == records_[i])) return false;
  return true;
}

void LaunchQueue::run_eagerly() {
  for (size_t i = 0; i < n_; ++i) records_[i].run(records_[i].blob, stream_);
}

LaunchQueue::Graph* LaunchQueue::capture(uint64_t h) {
  check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "graph capture");
  run_eagerly();
  cudaGraph_t graph = nullptr;
  check(cudaStreamEndCapture(stream_, &graph), "graph capture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  check(e, "graph instantiation");
  if (graphs_cache_.size() == kMaxGraphs) {  // the least recently used goes
    auto lru = std::min_element(graphs_cache_.begin(), graphs_cache_.end(),
                                [](const Graph& a, const Graph& b) { return a.last_used < b.last_used; });
    cudaGraphExecDestroy(lru->exec);
    graphs_cache_.erase(lru);
  }
  ++graphs_captured_;
  graphs_cache_.push_back({h, std::vector<Record>(records_.begin(), records_.begin() + n_), exec, uses_});
  return &graphs_cache_.back();
}

void LaunchQueue::run() {
  if (!recording_) return;
  recording_ = false;
  if (n_ == 0) return;
  if (timing_) {
    add_timing();
    check(cudaEventRecord(timing_->start, stream_), "timing event");
  }
  bool capturable = graphs_;
  for (size_t i = 0; i < n_ && capturable; ++i) capturable = records_[i].capturable;
  if (!capturable) {
    run_eagerly();
    n_ = 0;
    stop_timing(false);
    return;
  }
  const uint64_t h = hash();
  ++uses_;
  Graph* g = nullptr;
  for (Graph& c : graphs_cache_)
    if (c.hash == h && same(c)) g = &c;
  if (!g && h == last_hash_) g = capture(h);
  last_hash_ = h;
  if (g) {
    g->last_used = uses_;
    check(cudaGraphLaunch(g->exec, stream_), "graph launch");
    ++graph_launches_;
  } else {
    run_eagerly();
  }
  n_ = 0;
  stop_timing(g != nullptr);
}

void LaunchQueue::stop_timing(bool replay) {
  if (!timing_) return;
  check(cudaEventRecord(timing_->stop, stream_), "timing event");
  timing_->pending = true;
  timing_->replay = replay;
}

}  // namespace tern::cuda
