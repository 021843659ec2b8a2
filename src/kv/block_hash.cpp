#include "kv/block_hash.h"

#include <xxhash.h>

#include <cstring>
#include <vector>

namespace tern::kv {

BlockHash hash_block(const BlockHash& parent, std::span<const int32_t> tokens) {
  // parent hash, then the token ids, hashed as one buffer
  thread_local std::vector<unsigned char> buf;
  buf.resize(sizeof parent.lo + sizeof parent.hi + tokens.size_bytes());
  std::memcpy(buf.data(), &parent.lo, sizeof parent.lo);
  std::memcpy(buf.data() + sizeof parent.lo, &parent.hi, sizeof parent.hi);
  if (!tokens.empty()) std::memcpy(buf.data() + 16, tokens.data(), tokens.size_bytes());
  const XXH128_hash_t h = XXH3_128bits(buf.data(), buf.size());
  return {h.low64, h.high64};
}

}  // namespace tern::kv
