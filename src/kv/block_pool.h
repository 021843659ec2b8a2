// The KV cache's block pool (PagedAttention's allocator): a fixed number of blocks of `block_size`
// token slots, allocated once. Host-side bookkeeping only: which block is free, who holds it, and
// which full blocks hold a known token prefix (the prefix cache).
//
// Free blocks sit in one list in eviction order, as vLLM's block pool keeps them: allocation takes the
// head (the block released longest ago), release appends to the tail. A free block may still hold a
// cached prefix; it stays findable by its hash until allocation hands it to someone else (LRU
// eviction of unreferenced cached blocks).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "kv/block_hash.h"

namespace tern::kv {

class BlockPool {
 public:
  explicit BlockPool(int32_t n_blocks);

  int32_t n_blocks() const { return n_blocks_; }
  int32_t n_free() const { return n_free_; }                                     // reference count 0
  int32_t n_used() const { return n_blocks_ - n_free_; }                         // referenced
  int32_t n_cached() const { return static_cast<int32_t>(by_hash_.size()); }     // holding a known prefix
  int32_t ref_count(int32_t block) const { return ref_[checked(block)]; }

  // Takes the least recently released free block (evicting the prefix it held, if any) with one
  // reference. Returns -1 when every block is referenced.
  int32_t allocate();
  // Another owner of a referenced block (a forked sequence).
  void retain(int32_t block);
  // Drops one reference; at zero the block joins the tail of the free list, its prefix still cached.
  void release(int32_t block);

  // Prefix cache. find() returns the block holding the prefix `h` with one more reference (taking it
  // off the free list if it was free), or -1.
  int32_t find(const BlockHash& h);
  // Records that `block` (referenced, full, its KV computed) holds prefix `h`. If another block
  // already holds it, nothing changes: the first copy stays the one found.
  void publish(int32_t block, const BlockHash& h);
  bool is_cached(int32_t block) const { return cached_[checked(block)]; }

  // Consistency check for tests: free list, counts and hash index agree. Throws on a mismatch.
  void check_invariants() const;

 private:
  int32_t checked(int32_t block) const;
  void unlink(int32_t block);
  void push_tail(int32_t block);

  int32_t n_blocks_;
  int32_t n_free_ = 0;
  std::vector<int32_t> ref_;
  std::vector<int32_t> prev_, next_;  // the free list, intrusive; index n_blocks_ is the sentinel
  std::vector<uint8_t> cached_;
  std::vector<BlockHash> hash_;       // valid where cached_
  std::unordered_map<BlockHash, int32_t, BlockHash::Hasher> by_hash_;
};

}  // namespace tern::kv
