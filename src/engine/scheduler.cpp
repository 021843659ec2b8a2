#include "engine/scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace tern {
namespace {

void insert_ordered(std::vector<Sequence*>& q, Sequence* s) {
  q.insert(std::upper_bound(q.begin(), q.end(), s, [](const Sequence* a, const Sequence* b) { return a->before(*b); }), s);
}

bool erase_from(std::vector<Sequence*>& q, Sequence* s) {
  const auto it = std::find(q.begin(), q.end(), s);
  if (it == q.end()) return false;
  q.erase(it);
  return true;
}

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config, kv::KvCache& kv) : config_(config), kv_(kv) {
  TERN_CHECK(config.max_batch_tokens > 0, "scheduler: max_batch_tokens {}", config.max_batch_tokens);
  TERN_CHECK(config.max_running > 0, "scheduler: max_running {}", config.max_running);
}

void Scheduler::add(Sequence* s) {
  TERN_CHECK(s->n_tokens() > 0 && s->n_computed == 0 && s->kv.blocks.empty(), "scheduler: sequence {} added twice",
             s->id);
  enqueue_waiting(s);
}

void Scheduler::enqueue_waiting(Sequence* s) {
  s->state = SeqState::Waiting;
  insert_ordered(waiting_, s);
}

void Scheduler::remove(Sequence* s) {
  if (!erase_from(running_, s)) erase_from(waiting_, s);
  kv_.free(s->kv);
  s->state = SeqState::Finished;
}

void Scheduler::preempt(Sequence* s) {
  erase_from(running_, s);
  kv_.free(s->kv);
  s->n_computed = 0;
  ++s->n_preempted;
  ++stats_.preemptions;
  enqueue_waiting(s);
}

// True when a running sequence is still computing full blocks of a prompt that `s` starts with:
// admitted now, `s` would compute the same keys and values again; a few steps later it finds them in
// the prefix cache.
bool Scheduler::awaits_shared_prefill(const Sequence& s) const {
  if (!config_.prefix_caching || s.n_computed > 0) return false;
  const int32_t bs = kv_.block_size();
  for (const Sequence* r : running_) {
    if (r->n_computed >= r->n_prompt) continue;  // not prefilling
    const int32_t limit = std::min(r->n_prompt, s.n_tokens() - 1);
    int32_t common = 0;
    while (common < limit && r->tokens[static_cast<size_t>(common)] == s.tokens[static_cast<size_t>(common)]) ++common;
    const int32_t shared_blocks_end = common / bs * bs;
    if (shared_blocks_end > 0 && r->n_computed < shared_blocks_end) return true;
  }
  return false;
}

const StepPlan& Scheduler::schedule() {
  StepPlan& plan = plan_;
  plan.chunks.clear();
  plan.copies.clear();
  int32_t budget = config_.max_batch_tokens;
  bool preempted = false;

  // Running sequences, highest priority first: a decode token each (with room for draft tokens
  // when speculating), or their prompt's next chunk.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* s = running_[i];
    const int32_t pending = s->n_tokens() - s->n_computed;
    const int32_t n = std::min(pending, budget);
    // Drafts only from budget that every later running sequence's decode token leaves.
    const auto later = static_cast<int32_t>(running_.size() - i - 1);
    int32_t draft = pending == 1 ? std::clamp(budget - n - later, 0, s->spec_k) : 0;
    if (draft > 0 && kv_.blocks_needed(s->kv, s->n_computed + n + draft) > kv_.pool().n_free()) draft = 0;
    bool ok = kv_.grow(s->kv, s->n_computed + n + draft, plan.copies);
    while (!ok) {
      // Out of blocks: recompute the lowest-priority sequence later (possibly this one).
      Sequence* victim = running_.back();
      preempt(victim);
      preempted = true;
      if (victim == s) break;
      ok = kv_.grow(s->kv, s->n_computed + n, plan.copies);
    }
    if (!ok) break;  // `s` was the last running sequence and is waiting again
    plan.chunks.push_back({s, n + draft, s->n_computed + n == s->n_tokens(), draft});
    budget -= n + draft;
    ++i;
  }

  // Waiting sequences in priority order, as much of each prompt as the budget leaves. None is
  // admitted in a step that had to preempt: the cache is full.
  for (size_t wi = 0; !preempted && budget > 0 && wi < waiting_.size() &&
                      static_cast<int32_t>(running_.size()) < config_.max_running;) {
    Sequence* s = waiting_[wi];
    if (awaits_shared_prefill(*s)) {
      ++wi;  // later; the ones behind it may go now
      continue;
    }
    if (s->n_computed == 0 && s->kv.blocks.empty() && config_.prefix_caching) {
      s->n_computed = kv_.match_prefix(s->kv, s->tokens);
      if (s->n_preempted == 0) s->n_cached_prompt = s->n_computed;
    }
    const int32_t n = std::min(s->n_tokens() - s->n_computed, budget);
    const int32_t lookahead = config_.lookahead_slots > 0 ? kv_.blocks_for(config_.lookahead_slots) : 0;
    const int32_t reserve =
        running_.empty() ? 0 : config_.watermark_blocks + lookahead * (static_cast<int32_t>(running_.size()) + 1);
    if (kv_.blocks_needed(s->kv, s->n_computed + n) + reserve > kv_.pool().n_free() ||
        !kv_.grow(s->kv, s->n_computed + n, plan.copies)) {
      kv_.free(s->kv);  // give back a prefix hit; it stays cached for the next try
      s->n_computed = 0;
      break;
    }
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(wi));
    if (s->n_preempted == 0) {
      stats_.prefix_query_tokens += s->n_prompt;
      stats_.prefix_hit_tokens += s->n_cached_prompt;
    }
    s->state = SeqState::Running;
    insert_ordered(running_, s);
    plan.chunks.push_back({s, n, s->n_computed + n == s->n_tokens()});
    budget -= n;
  }
  plan.n_tokens = config_.max_batch_tokens - budget;
  return plan;
}

void Scheduler::update(const StepPlan& plan, const StepOutput& out) {
  TERN_CHECK(out.n_chunks() == plan.chunks.size(), "scheduler: output for {} chunks, {} scheduled", out.n_chunks(),
             plan.chunks.size());
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    Sequence* s = c.seq;
    const std::span<const int32_t> added = out.chunk(i);
    TERN_CHECK(added.size() == (c.sample ? 1u : 0u) || (c.n_draft > 0 && added.size() >= 1 &&
                                                       added.size() <= static_cast<size_t>(c.n_draft) + 1),
               "scheduler: {} tokens for a chunk with {} draft slots", added.size(), c.n_draft);
    // The chunk's own tokens, plus the accepted drafts (all but the last added token).
    s->n_computed += c.n_tokens - c.n_draft;
    if (c.n_draft > 0) {
      s->n_computed += static_cast<int32_t>(added.size()) - 1;
      kv_.truncate(s->kv, s->n_computed);  // slots of rejected (or never proposed) drafts
    }
    s->tokens.insert(s->tokens.end(), added.begin(), added.end());
    if (config_.prefix_caching) kv_.publish(s->kv, s->tokens, s->n_computed);
  }
  ++stats_.steps;
}

}  // namespace tern
