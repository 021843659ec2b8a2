#include "kv/block_pool.h"

#include "core/error.h"

namespace tern::kv {

BlockPool::BlockPool(int32_t n_blocks) : n_blocks_(n_blocks) {
  TERN_CHECK(n_blocks > 0, "KV block pool: {} blocks", n_blocks);
  ref_.assign(n_blocks, 0);
  cached_.assign(n_blocks, 0);
  hash_.resize(n_blocks);
  prev_.resize(n_blocks + 1);
  next_.resize(n_blocks + 1);
  prev_[n_blocks] = next_[n_blocks] = n_blocks;  // empty list
  for (int32_t b = 0; b < n_blocks; ++b) push_tail(b);
}

int32_t BlockPool::checked(int32_t block) const {
  TERN_CHECK(block >= 0 && block < n_blocks_, "KV block {} outside the pool of {}", block, n_blocks_);
  return block;
}

void BlockPool::unlink(int32_t b) {
  next_[prev_[b]] = next_[b];
  prev_[next_[b]] = prev_[b];
  --n_free_;
}

void BlockPool::push_tail(int32_t b) {
  const int32_t s = n_blocks_;
  prev_[b] = prev_[s];
  next_[b] = s;
  next_[prev_[s]] = b;
  prev_[s] = b;
  ++n_free_;
}

int32_t BlockPool::allocate() {
  if (n_free_ == 0) return -1;
  const int32_t b = next_[n_blocks_];
  unlink(b);
  if (cached_[b]) {
    by_hash_.erase(hash_[b]);
    cached_[b] = 0;
  }
  ref_[b] = 1;
  return b;
}

void BlockPool::retain(int32_t block) {
  TERN_CHECK(ref_[checked(block)] > 0, "KV block {}: retain of a free block", block);
  ++ref_[block];
}

void BlockPool::release(int32_t block) {
  TERN_CHECK(ref_[checked(block)] > 0, "KV block {}: released more often than held", block);
  if (--ref_[block] == 0) push_tail(block);
}

int32_t BlockPool::find(const BlockHash& h) {
  const auto it = by_hash_.find(h);
  if (it == by_hash_.end()) return -1;
  const int32_t b = it->second;
  if (ref_[b]++ == 0) unlink(b);
  return b;
}

void BlockPool::publish(int32_t block, const BlockHash& h) {
  TERN_CHECK(ref_[checked(block)] > 0, "KV block {}: publish of a free block", block);
  if (cached_[block] || by_hash_.contains(h)) return;
  cached_[block] = 1;
  hash_[block] = h;
  by_hash_.emplace(h, block);
}

void BlockPool::check_invariants() const {
  int32_t n = 0;
  std::vector<uint8_t> in_list(n_blocks_, 0);
  for (int32_t b = next_[n_blocks_]; b != n_blocks_; b = next_[b]) {
    TERN_CHECK(n++ < n_blocks_, "KV block pool: free list has a cycle");
    TERN_CHECK(ref_[b] == 0, "KV block pool: block {} is in the free list with {} references", b, ref_[b]);
    TERN_CHECK(next_[prev_[b]] == b, "KV block pool: free list links broken at {}", b);
    in_list[b] = 1;
  }
  TERN_CHECK(n == n_free_, "KV block pool: free list holds {} blocks, count says {}", n, n_free_);
  int32_t n_cached = 0;
  for (int32_t b = 0; b < n_blocks_; ++b) {
    TERN_CHECK(ref_[b] >= 0, "KV block pool: block {} has {} references", b, ref_[b]);
    TERN_CHECK((ref_[b] == 0) == (in_list[b] != 0), "KV block pool: block {} free-list membership wrong", b);
    if (cached_[b]) {
      ++n_cached;
      const auto it = by_hash_.find(hash_[b]);
      TERN_CHECK(it != by_hash_.end() && it->second == b, "KV block pool: block {} missing from the hash index", b);
    }
  }
  TERN_CHECK(n_cached == static_cast<int32_t>(by_hash_.size()), "KV block pool: hash index has stale entries");
}

}  // namespace tern::kv
