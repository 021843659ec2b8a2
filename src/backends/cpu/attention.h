// FlashAttention-style attention for the CPU backend: queries in tiles, keys and values streamed
// position by position through the paged cache's block table with an online softmax, so no score
// matrix is ever materialised. One kernel serves prefill (tiles of a sequence's consecutive tokens)
// and decode (one token, its context split across threads and the partial softmaxes merged exactly,
// as FlashDecoding does).
#pragma once

#include <cstdint>
#include <vector>

#include "backends/cpu/kernels/kernels.h"
#include "core/thread_pool.h"
#include "ops/ops.h"

namespace tern::cpu {

class FlashAttention {
 public:
  // exact: q meets an f16 cache in f32 instead of being rounded to f16 first (see ops.h, Numerics).
  void run(const AttentionArgs& a, const Kernels& k, ThreadPool& pool, bool exact);

 private:
  struct Tile {
    int64_t t0, t1;    // tokens [t0, t1), all of one sequence
    int64_t n_kv;      // positions the tile's last token attends to
    int64_t n_segs;    // segments of the context (see kSegment)
    bool split;        // one work item per segment (a lone token with a long context)
    int64_t partial0;  // split: index of its first merge partial in partial_
  };
  struct Item;
  std::vector<Tile> tiles_;
  std::vector<int64_t> first_item_;  // per tile: index of its first work item
  std::vector<float> partial_;       // split tiles: per kv head, segment and row, m, l, acc[d]
  std::vector<const Tile*> split_tiles_;
};

}  // namespace tern::cpu
