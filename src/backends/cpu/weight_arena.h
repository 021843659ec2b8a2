// Host memory for the weights the CPU backend repacks at load, backed by 2 MiB pages where the
// kernel allows (transparent huge pages on request, MADV_HUGEPAGE).
//
// Why: decode streams every weight byte once per token, and with 4 KiB pages that stream crosses a
// page (and a TLB entry, and the end of a hardware-prefetch stream) every 4 KiB. On the 2-vCPU Xeon
// of 2026-11-27, a plain read loop streamed 29 GB/s over 4 KiB pages against 32 GB/s over huge
// pages (bench/machine with and without its madvise). The ceiling that `tern bench` quotes is the
// huge-page one, so the weights must live on huge pages too to get near it.
//
// One arena packs many matrices into chunks of at least kChunkBytes: a huge page can only back
// whole aligned 2 MiB ranges, and the model's smaller matrices (a 2048 x 256 K/V projection is
// under 300 KiB) would otherwise each sit on 4 KiB pages. Chunks are reserved, not committed
// (MAP_NORESERVE): an untouched tail costs no memory, and a touched one at most one 2 MiB page.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tern::cpu {

class WeightArena {
 public:
  static constexpr size_t kHugePage = size_t{2} << 20;
  static constexpr size_t kChunkBytes = size_t{64} << 20;
  static constexpr size_t kAlign = 64;  // a cache line: every kernel's loads start aligned

  WeightArena() = default;
  WeightArena(const WeightArena&) = delete;
  WeightArena& operator=(const WeightArena&) = delete;
  ~WeightArena();

  // `bytes` of uninitialised memory, aligned to kAlign, valid until the arena is destroyed.
  // Concurrent calls are not allowed (the backend prepares weights one at a time).
  void* allocate(size_t bytes);

  size_t reserved_bytes() const;

 private:
  struct Chunk {
    uint8_t* base;
    size_t size;
    size_t used;
  };
  std::vector<Chunk> chunks_;
};

}  // namespace tern::cpu
