// The host-memory defaults of the Backend interface, shared by the CPU and reference backends.
#include "ops/backend.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/argmax.h"
#include "core/error.h"
#include "core/top_k.h"

namespace tern {
namespace {

class HostMapping final : public Buffer {
 public:
  explicit HostMapping(size_t bytes) {
    size_ = bytes;
    if (bytes == 0) return;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    TERN_CHECK(p != MAP_FAILED, "cannot reserve {} MiB of memory", bytes >> 20);
    data_ = p;
  }
  ~HostMapping() override {
    if (data_) munmap(data_, size_);
  }
};

}  // namespace

std::unique_ptr<Buffer> Backend::alloc(size_t bytes) { return std::make_unique<HostMapping>(bytes); }

size_t Backend::available_memory() const {
  std::ifstream f("/proc/meminfo");
  std::string key, unit;
  size_t kb = 0;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

void Backend::to_backend(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void Backend::to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void Backend::copy(void* dst, const void* src, size_t bytes) { std::memmove(dst, src, bytes); }

std::pair<int64_t, int64_t> Backend::top_k_shape(const TensorView& logits, int k, int64_t max_k) {
  TERN_CHECK(logits.dtype == DType::F32 && logits.is_contiguous(), "top_k: logits must be contiguous F32");
  const int64_t n = logits.ne[0], rows = logits.nelements() / std::max<int64_t>(n, 1);
  TERN_CHECK(k > 0 && k <= std::min(n, max_k), "top_k: k {} outside 1..{}", k, std::min(n, max_k));
  return {n, rows};
}

void Backend::top_k(const TensorView& logits, int k, float* values, int32_t* ids) {
  const auto [n, rows] = top_k_shape(logits, k, INT64_MAX);
  // Scratch kept per thread: a sampling pass calls this every step, and a row of candidates is
  // larger than malloc hands out without mapping fresh pages.
  thread_local std::vector<float> host;
  thread_local std::vector<ScoredId> work;
  const float* x = logits.ptr<float>();
  if (device() != Device::CPU) {
    host.resize(static_cast<size_t>(n * rows));
    to_host(host.data(), x, host.size() * sizeof(float));
    x = host.data();
  }
  if (k == 1) {  // argmax: the same pick, without building and sorting candidates
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = argmax(std::span<const float>(x + r * n, static_cast<size_t>(n)));
      values[r] = std::isnan(x[r * n + i]) ? -INFINITY : x[r * n + i];
      ids[r] = static_cast<int32_t>(i);
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    select_top_k(std::span<const float>(x + r * n, static_cast<size_t>(n)), static_cast<size_t>(k), work);
    for (int i = 0; i < k; ++i) {
      values[r * k + i] = work[static_cast<size_t>(i)].value;
      ids[r * k + i] = work[static_cast<size_t>(i)].id;
    }
  }
}

}  // namespace tern
