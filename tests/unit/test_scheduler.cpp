// The scheduler on its own: a fake forward pass that "samples" a token derived from the sequence,
// so that the plan's bookkeeping (budget, order, chunked prefill, prefix hits, preemption) can be
// checked without a model.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>

#include "engine/scheduler.h"

namespace tern {
namespace {

struct Harness {
  kv::KvCache kv;
  Scheduler sched;
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::map<uint64_t, int32_t> max_new;  // tokens to generate per sequence
  uint64_t next_id = 0;
  int32_t spec_k = 0;  // draft tokens asked for per decode; the fake verifier accepts a varying number

  Harness(int32_t n_blocks, int32_t block_size, SchedulerConfig c) : kv(n_blocks, block_size), sched(c, kv) {}

  Sequence* add(std::vector<int32_t> prompt, int32_t n_new, int priority = 0) {
    auto s = std::make_unique<Sequence>();
    s->id = next_id;
    s->arrival = next_id++;
    s->priority = priority;
    s->tokens = std::move(prompt);
    s->n_prompt = s->n_tokens();
    max_new[s->id] = n_new;
    sched.add(s.get());
    seqs.push_back(std::move(s));
    return seqs.back().get();
  }

  // One step: schedules, checks the plan, "samples" (the token is a function of the position, so a
  // recomputed sequence produces the same), finishes sequences that are done. Returns the plan.
  StepPlan step() {
    for (auto& s : seqs)
      if (s->state != SeqState::Finished) s->spec_k = std::max(0, std::min(spec_k, max_new[s->id] - s->n_generated() - 1));
    StepPlan plan = sched.schedule();
    int32_t total = 0;
    StepOutput out;
    for (const auto& c : plan.chunks) {
      EXPECT_GT(c.n_tokens, 0);
      EXPECT_LE(c.seq->n_computed + c.n_tokens - c.n_draft, c.seq->n_tokens());
      EXPECT_GE(c.seq->kv.n_slots, c.seq->n_computed + c.n_tokens);
      EXPECT_LE(c.n_draft, c.seq->spec_k);
      total += c.n_tokens;
      if (c.sample) {
        // Drafts that are "right" are the tokens the sequence would sample next; accept some of them.
        const int32_t accepted = c.n_draft > 0 ? static_cast<int32_t>((c.seq->n_tokens() + c.seq->id) % (c.n_draft + 1)) : 0;
        for (int32_t j = 0; j <= accepted; ++j) out.tokens.push_back(token_at(*c.seq, c.seq->n_tokens() + j));
      }
      out.end_chunk();
    }
    EXPECT_EQ(total, plan.n_tokens);
    EXPECT_LE(total, sched.config().max_batch_tokens);
    sched.update(plan, out);
    for (const auto& c : plan.chunks) {
      EXPECT_EQ(c.seq->kv.n_slots, c.seq->n_computed);  // rejected drafts' slots are given back
      if (c.sample && c.seq->n_generated() >= max_new[c.seq->id]) sched.remove(c.seq);
    }
    kv.check_invariants();
    return plan;
  }

  // The token a sequence "samples" at index i: a function of the position, so a recomputed or
  // speculated sequence produces the same.
  static int32_t token_at(const Sequence& s, int32_t i) { return static_cast<int32_t>((i * 7 + s.id) % 50); }

  void run_to_end(int max_steps = 10000) {
    for (int i = 0; i < max_steps && (sched.n_running() + sched.n_waiting()) > 0; ++i) step();
    ASSERT_EQ(sched.n_running() + sched.n_waiting(), 0u) << "did not finish";
  }
};

std::vector<int32_t> tokens(int n, int32_t salt) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (i * 31 + salt) % 97;
  return t;
}

TEST(Scheduler, DecodesFirstThenChunkedPrefill) {
  Harness h(64, 4, {.max_batch_tokens = 10});
  Sequence* a = h.add(tokens(6, 1), 5);
  StepPlan p = h.step();  // a's whole prompt
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].n_tokens, 6);
  EXPECT_TRUE(p.chunks[0].sample);
  Sequence* b = h.add(tokens(25, 2), 3);
  p = h.step();  // a decodes, b gets the other 9 tokens of the budget
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[0].seq, a);
  EXPECT_EQ(p.chunks[0].n_tokens, 1);
  EXPECT_EQ(p.chunks[1].seq, b);
  EXPECT_EQ(p.chunks[1].n_tokens, 9);
  EXPECT_FALSE(p.chunks[1].sample);
  p = h.step();  // b is running now: a decode, then b's next chunk
  EXPECT_EQ(p.chunks[1].n_tokens, 9);
  p = h.step();
  EXPECT_EQ(p.chunks[1].n_tokens, 7);
  EXPECT_TRUE(p.chunks[1].sample);
  h.run_to_end();
  EXPECT_EQ(a->n_generated(), 5);
  EXPECT_EQ(b->n_generated(), 3);
  EXPECT_EQ(h.kv.pool().n_free(), 64);
}

TEST(Scheduler, SharedPromptIsAPrefixHit) {
  Harness h(64, 4, {.max_batch_tokens = 64});
  const auto prompt = tokens(21, 3);
  h.add(prompt, 2);
  h.run_to_end();
  Sequence* b = h.add(prompt, 2);
  const StepPlan p = h.step();
  EXPECT_EQ(b->n_cached_prompt, 20);  // five full blocks; the last token is always computed
  EXPECT_EQ(p.chunks[0].n_tokens, 1);
  h.run_to_end();
  EXPECT_EQ(h.sched.stats().prefix_hit_tokens, 20);
  EXPECT_EQ(h.sched.stats().prefix_query_tokens, 42);
}

// Requests with a common prompt arriving together: the first computes it, the others wait for its
// blocks and find them cached; a request behind them with another prompt is not held up.
TEST(Scheduler, CommonPromptIsComputedOnce) {
  Harness h(64, 4, {.max_batch_tokens = 12});
  const auto prompt = tokens(30, 5);
  Sequence* a = h.add(prompt, 2);
  Sequence* b = h.add(prompt, 2);
  Sequence* other = h.add(tokens(6, 9), 2);
  StepPlan p = h.step();
  ASSERT_EQ(p.chunks.size(), 1u);  // a's first 12 tokens fill the budget; b waits
  EXPECT_EQ(p.chunks[0].seq, a);
  p = h.step();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(b->state, SeqState::Waiting);
  p = h.step();  // a's last 6 tokens; b still waits for a's blocks, `other` takes the rest of the budget
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[1].seq, other);
  p = h.step();  // a decodes; b is admitted with every full block of the prompt cached
  EXPECT_EQ(b->n_cached_prompt, 28);
  h.run_to_end();
  EXPECT_EQ(b->n_generated(), 2);
  EXPECT_EQ(h.sched.stats().prefix_hit_tokens, 28);
}

TEST(Scheduler, PriorityOrdersTheWaitingQueue) {
  Harness h(64, 4, {.max_batch_tokens = 8, .max_running = 1});
  Sequence* low = h.add(tokens(4, 1), 1, /*priority=*/5);
  Sequence* high = h.add(tokens(4, 2), 1, /*priority=*/0);
  const StepPlan p = h.step();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].seq, high);
  h.run_to_end();
  EXPECT_EQ(low->n_generated(), 1);
}

// A pool too small for every sequence at once: sequences are preempted, recomputed, and still
// produce exactly what they produce alone.
TEST(Scheduler, PreemptionByRecomputeKeepsResults) {
  auto run = [](int32_t n_blocks, int n_seqs) {
    Harness h(n_blocks, 4, {.max_batch_tokens = 16});
    for (int i = 0; i < n_seqs; ++i) h.add(tokens(5 + 3 * i, i), 12);
    h.run_to_end();
    std::map<uint64_t, std::vector<int32_t>> out;
    for (auto& s : h.seqs) out[s->id] = s->tokens;
    EXPECT_EQ(h.kv.pool().n_free(), n_blocks);
    return std::pair{out, h.sched.stats().preemptions};
  };
  const auto [roomy, p0] = run(200, 6);
  const auto [tight, p1] = run(12, 6);
  EXPECT_EQ(p0, 0);
  EXPECT_GT(p1, 0);
  EXPECT_EQ(roomy, tight);
}

TEST(Scheduler, RandomArrivalsRespectBudgetAndFreeEverything) {
  std::mt19937 rng(3);
  Harness h(40, 4, {.max_batch_tokens = 24, .max_running = 6, .watermark_blocks = 1});
  for (int step = 0; step < 3000; ++step) {
    if (rng() % 3 == 0 && h.seqs.size() < 300)
      h.add(tokens(1 + static_cast<int>(rng() % 40), static_cast<int32_t>(rng() % 4)), 1 + static_cast<int>(rng() % 20),
            static_cast<int>(rng() % 3));
    h.step();
  }
  h.run_to_end();
  for (auto& s : h.seqs) EXPECT_EQ(s->n_generated(), h.max_new[s->id]);
  EXPECT_EQ(h.kv.pool().n_free(), 40);
  EXPECT_GT(h.sched.stats().prefix_hit_tokens, 0);
}

// Speculative decodes reserve budget and slots for drafts, give back the slots of rejected ones,
// never take a later sequence's decode token, and produce exactly what plain decoding produces.
TEST(Scheduler, SpeculativeDecodesRollBackRejectedSlots) {
  auto run = [](int32_t spec_k, int32_t n_blocks) {
    Harness h(n_blocks, 4, {.max_batch_tokens = 12});
    h.spec_k = spec_k;
    for (int i = 0; i < 5; ++i) h.add(tokens(3 + 4 * i, i), 15);
    int drafts = 0;
    for (int i = 0; i < 1000 && (h.sched.n_running() + h.sched.n_waiting()) > 0; ++i) {
      const StepPlan& p = h.step();
      for (const auto& c : p.chunks) drafts += c.n_draft;
    }
    std::map<uint64_t, std::vector<int32_t>> out;
    for (auto& s : h.seqs) out[s->id] = s->tokens;
    EXPECT_EQ(h.kv.pool().n_free(), n_blocks);
    return std::pair{out, drafts};
  };
  const auto [plain, d0] = run(0, 200);
  const auto [spec, d1] = run(4, 200);
  const auto [tight, d2] = run(4, 14);
  EXPECT_EQ(d0, 0);
  EXPECT_GT(d1, 0);
  EXPECT_GT(d2, 0);
  EXPECT_EQ(plain, spec);
  EXPECT_EQ(plain, tight);
}

}  // namespace
}  // namespace tern
