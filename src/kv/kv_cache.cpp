#include "kv/kv_cache.h"

#include "core/error.h"

namespace tern::kv {

KvCache::KvCache(int32_t n_blocks, int32_t block_size) : pool_(n_blocks), block_size_(block_size) {
  TERN_CHECK(block_size > 0, "KV cache: block size {}", block_size);
}

int32_t KvCache::match_prefix(SeqBlocks& s, std::span<const int32_t> tokens) {
  TERN_CHECK(s.blocks.empty(), "KV cache: prefix lookup for a sequence that already holds blocks");
  if (tokens.empty()) return 0;
  const size_t bs = static_cast<size_t>(block_size_);
  BlockHash h;
  for (size_t b = 0; (b + 1) * bs <= tokens.size() - 1; ++b) {
    const BlockHash next = hash_block(h, tokens.subspan(b * bs, bs));
    const int32_t id = pool_.find(next);
    if (id < 0) break;
    s.blocks.push_back(id);
    h = next;
  }
  const auto n = static_cast<int32_t>(s.blocks.size());
  s.n_slots = n * block_size_;
  s.n_published = n;
  s.chain = h;
  return s.n_slots;
}

int32_t KvCache::blocks_needed(const SeqBlocks& s, int32_t n_slots) const {
  if (n_slots <= s.n_slots) return 0;
  int32_t need = blocks_for(n_slots) - static_cast<int32_t>(s.blocks.size());
  if (s.n_slots % block_size_ != 0 && pool_.ref_count(s.blocks.back()) > 1) ++need;  // copy-on-write
  return need;
}

bool KvCache::grow(SeqBlocks& s, int32_t n_slots, std::vector<BlockCopy>& copies) {
  if (n_slots <= s.n_slots) return true;
  if (blocks_needed(s, n_slots) > pool_.n_free()) return false;
  const int32_t partial = s.n_slots % block_size_;
  if (partial != 0 && pool_.ref_count(s.blocks.back()) > 1) {
    // The last block is shared and about to be written past slot `partial`: give this sequence its
    // own copy, leaving the other owners' block as it is.
    const int32_t copy = pool_.allocate();
    copies.push_back({s.blocks.back(), copy, partial});
    pool_.release(s.blocks.back());
    s.blocks.back() = copy;
    ++stats_.cow_copies;
  }
  while (static_cast<int32_t>(s.blocks.size()) < blocks_for(n_slots)) s.blocks.push_back(pool_.allocate());
  s.n_slots = n_slots;
  return true;
}

void KvCache::publish(SeqBlocks& s, std::span<const int32_t> tokens, int32_t n_computed) {
  TERN_CHECK(n_computed <= s.n_slots && static_cast<size_t>(n_computed) <= tokens.size(),
             "KV cache: {} computed tokens but {} slots", n_computed, s.n_slots);
  const size_t bs = static_cast<size_t>(block_size_);
  for (int32_t b = s.n_published; (b + 1) * block_size_ <= n_computed; ++b) {
    s.chain = hash_block(s.chain, tokens.subspan(static_cast<size_t>(b) * bs, bs));
    pool_.publish(s.blocks[b], s.chain);
    s.n_published = b + 1;
  }
}

void KvCache::truncate(SeqBlocks& s, int32_t n_slots) {
  if (n_slots >= s.n_slots) return;
  TERN_CHECK(n_slots >= s.n_published * block_size_ && n_slots >= 0,
             "KV cache: truncating to {} slots would cut {} published blocks", n_slots, s.n_published);
  while (static_cast<int32_t>(s.blocks.size()) > blocks_for(n_slots)) {
    pool_.release(s.blocks.back());
    s.blocks.pop_back();
  }
  s.n_slots = n_slots;
}

void KvCache::fork(const SeqBlocks& parent, SeqBlocks& child) {
  TERN_CHECK(child.blocks.empty(), "KV cache: fork into a sequence that already holds blocks");
  for (int32_t b : parent.blocks) pool_.retain(b);
  child = parent;
}

void KvCache::free(SeqBlocks& s) {
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) pool_.release(*it);
  s = SeqBlocks{};
}

}  // namespace tern::kv
