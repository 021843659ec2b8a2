// A sequence as the scheduler sees it: its tokens (prompt, then generated), how many of them have
// keys and values in the cache, and its share of the cache. What the request asked for (sampling,
// stop strings, streaming) stays with the engine's request, not here.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_cache.h"

namespace tern {

enum class SeqState { Waiting, Running, Finished };

struct Sequence {
  uint64_t id = 0;
  int priority = 0;      // lower runs first (vLLM's convention)
  uint64_t arrival = 0;  // admission order, the tie-break
  std::vector<int32_t> tokens;  // prompt, then generated
  int32_t n_prompt = 0;
  int32_t n_computed = 0;       // leading tokens whose keys and values are in the cache
  int32_t n_cached_prompt = 0;  // prompt tokens found in the prefix cache at first admission
  int32_t n_preempted = 0;
  // Speculative decoding: how many draft tokens to verify with this sequence's next decode token
  // (set by the engine before each schedule(); the scheduler may give fewer).
  int32_t spec_k = 0;
  kv::SeqBlocks kv;
  SeqState state = SeqState::Waiting;

  int32_t n_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t n_generated() const { return n_tokens() - n_prompt; }
  // Runs before `o`: lower priority value, then earlier arrival.
  bool before(const Sequence& o) const { return priority != o.priority ? priority < o.priority : arrival < o.arrival; }
};

}  // namespace tern
