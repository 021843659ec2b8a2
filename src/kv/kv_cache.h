// Per-sequence block tables over the BlockPool: append-only tables, prefix-cache lookup by hash
// chain, publishing of full blocks once their keys and values are computed, forks that share blocks,
// and copy-on-write when a shared, partly filled block would be appended to.
//
// Only bookkeeping lives here. The cache memory (models/kv_storage.h) is written by the forward pass;
// a copy-on-write asks its owner to copy one block's slots (BlockCopy) before the next pass.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kv/block_pool.h"

namespace tern::kv {

// One sequence's share of the cache.
struct SeqBlocks {
  std::vector<int32_t> blocks;  // physical block ids, in logical order
  int32_t n_slots = 0;          // token slots assigned (the first n_slots positions)
  int32_t n_published = 0;      // leading full blocks known to the prefix cache
  BlockHash chain;              // hash of the first n_published blocks
};

// Copy the first `n_slots` slots of block `src` into block `dst`, in every layer.
struct BlockCopy {
  int32_t src, dst, n_slots;
};

struct KvCacheStats {
  int64_t cow_copies = 0;
};

class KvCache {
 public:
  KvCache(int32_t n_blocks, int32_t block_size);

  int32_t block_size() const { return block_size_; }
  const BlockPool& pool() const { return pool_; }
  const KvCacheStats& stats() const { return stats_; }
  int32_t blocks_for(int64_t n_tokens) const {
    return static_cast<int32_t>((n_tokens + block_size_ - 1) / block_size_);
  }

  // For a sequence that holds nothing yet: shares the cached blocks of the longest cached prefix of
  // `tokens` and returns its length. At least the last token is always left out, so that the
  // forward pass has a token whose logits it computes.
  int32_t match_prefix(SeqBlocks& s, std::span<const int32_t> tokens);

  // Blocks that growing `s` to `n_slots` would take from the pool (copy-on-write included).
  int32_t blocks_needed(const SeqBlocks& s, int32_t n_slots) const;
  // Assigns slots up to `n_slots`: appends blocks, and replaces a shared, partly filled last block by
  // a private copy (appending its BlockCopy to `copies`). Returns false, changing nothing, when the
  // pool cannot supply the blocks.
  bool grow(SeqBlocks& s, int32_t n_slots, std::vector<BlockCopy>& copies);

  // Tells the cache that slots [0, n_computed) of `s` hold the keys and values of tokens[0, n_computed):
  // every block that is now full is published under its prefix hash.
  void publish(SeqBlocks& s, std::span<const int32_t> tokens, int32_t n_computed);

  // Gives back the slots from `n_slots` on (speculative tokens that were rejected): blocks past the
  // new end return to the pool. Published blocks are never cut.
  void truncate(SeqBlocks& s, int32_t n_slots);

  // `child` (empty) shares every block of `parent`.
  void fork(const SeqBlocks& parent, SeqBlocks& child);
  // Returns the blocks to the pool, last block first, so that the blocks least likely to be shared
  // (a prompt's tail) are evicted before its head.
  void free(SeqBlocks& s);

  void check_invariants() const { pool_.check_invariants(); }

 private:
  BlockPool pool_;
  int32_t block_size_;
  KvCacheStats stats_;
};

}  // namespace tern::kv
