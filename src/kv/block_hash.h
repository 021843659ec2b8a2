// The prefix cache's key: a hash chain over full blocks, each block's hash covering its parent's
// hash and its own token ids, so equal hashes mean equal whole prefixes. 128 bits (XXH3) so that a
// collision, which would silently attend to another prompt's keys, is not a practical concern.
#pragma once

#include <cstdint>
#include <span>

namespace tern::kv {

struct BlockHash {
  uint64_t lo = 0, hi = 0;
  bool operator==(const BlockHash&) const = default;
  struct Hasher {
    size_t operator()(const BlockHash& h) const { return static_cast<size_t>(h.lo ^ (h.hi * 0x9e3779b97f4a7c15ull)); }
  };
};

// Hash of a full block of `tokens` following the prefix `parent` (the first block's parent is {}).
BlockHash hash_block(const BlockHash& parent, std::span<const int32_t> tokens);

}  // namespace tern::kv
