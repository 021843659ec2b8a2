#include "backends/cpu/weight_arena.h"

#include <sys/mman.h>

#include <algorithm>

#include "core/error.h"

namespace tern::cpu {
namespace {

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

WeightArena::~WeightArena() {
  for (const Chunk& c : chunks_) munmap(c.base, c.size);
}

void* WeightArena::allocate(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (chunks_.empty() || chunks_.back().size - chunks_.back().used < bytes) {
    const size_t size = round_up(std::max(bytes, kChunkBytes), kHugePage);
    // Reserve one huge page more than needed and start at the first 2 MiB boundary: only aligned
    // 2 MiB ranges can be backed by huge pages. The unaligned head and tail are returned.
    const size_t span = size + kHugePage;
    void* p = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    TERN_CHECK(p != MAP_FAILED, "cannot reserve {} MiB of memory for the repacked weights", span >> 20);
    const auto start = reinterpret_cast<uintptr_t>(p);
    const uintptr_t aligned = round_up(start, kHugePage);
    if (aligned > start) munmap(p, aligned - start);
    const uintptr_t end = start + span, aligned_end = aligned + size;
    if (end > aligned_end) munmap(reinterpret_cast<void*>(aligned_end), end - aligned_end);
    auto* base = reinterpret_cast<uint8_t*>(aligned);
    ::madvise(base, size, MADV_HUGEPAGE);  // a hint: without THP the arena still works on 4 KiB pages
    chunks_.push_back({base, size, 0});
  }
  Chunk& c = chunks_.back();
  void* p = c.base + c.used;
  c.used = round_up(c.used + bytes, kAlign);
  return p;
}

size_t WeightArena::reserved_bytes() const {
  size_t n = 0;
  for (const Chunk& c : chunks_) n += c.size;
  return n;
}

}  // namespace tern::cpu
