// The host-memory defaults of the Backend interface, shared by the CPU and reference backends.
#include "ops/backend.h"

#include <sys/mman.h>

#include <cstring>
#include <fstream>
#include <string>

#include "core/error.h"

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

}  // namespace tern
