// Continuous batching on the real default model: a request gives the same tokens (and the same
// log-probabilities, bit for bit) alone as among 31 others of varied lengths that arrive at
// different steps, through chunked prefill, prefix-cache hits and preemption by recompute.
#include <gtest/gtest.h>

#include "model_files.h"
#include "request_output.h"

#include <filesystem>
#include <map>

#include "tern/engine.h"

namespace tern {
namespace {

using test_files::collect;
using test_files::Output;

std::string model_path() { return test_files::default_model_path(); }

// 32 requests: prompts of 1 to ~800 tokens (long enough for split decode attention), some
// sharing a long prefix; greedy and seeded sampling.
std::vector<GenerateRequest> make_requests(Engine& e) {
  const std::string shared =
      "You are a careful assistant. Answer briefly and precisely, and say when you do not know. "
      "The user is asking about the history of computing, from mechanical calculators to the first "
      "stored-program machines and the microprocessor. ";
  const char* questions[] = {"Who built the Analytical Engine?", "What was ENIAC?", "Tell me about the transistor.",
                             "Why did vacuum tubes fail?", "Name an early programming language.", "What is a bit?",
                             "When was the microprocessor invented?", "Who was Grace Hopper?"};
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 32; ++i) {
    GenerateRequest r;
    std::string text;
    if (i % 4 == 0) text = shared + questions[i % 8];
    else if (i % 4 == 1) text = std::string(questions[i % 8]);
    else if (i % 4 == 2) for (int k = 0; k <= 2 * (i / 4); ++k) text += shared;  // long, up to ~800 tokens
    else text = "x";
    r.prompt = e.tokenize(text);
    r.max_tokens = 4 + (i * 7) % 23;
    r.ignore_eos = i % 3 == 0;
    r.top_logprobs = 2;
    if (i % 5 == 0) r.sampling = {.temperature = 0.9f, .top_k = 40, .top_p = 0.95f, .seed = static_cast<uint64_t>(i)};
    else r.sampling.temperature = 0;
    reqs.push_back(std::move(r));
  }
  return reqs;
}

EngineConfig config(size_t kv_memory = 0, bool prefix_caching = true, bool top_logits = true) {
  return {.model_path = model_path(), .n_threads = 2, .n_ctx = 1024, .max_batch_tokens = 96, .kv_memory = kv_memory,
          .prefix_caching = prefix_caching, .sample_from_top_logits = top_logits};
}

std::vector<Output> run_alone(const std::vector<GenerateRequest>& reqs) {
  auto e = Engine::load(config());
  std::vector<Output> out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    Output& o = out[i];
    e->submit(reqs[i], collect(o));
    while (e->step()) {
    }
  }
  const EngineMetrics m = e->metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  return out;
}

// Submits the requests a few at a time between steps; returns outputs and the final metrics.
// burst: all at once instead.
std::pair<std::vector<Output>, EngineMetrics> run_together(const std::vector<GenerateRequest>& reqs, size_t kv_memory,
                                                           bool burst = false, bool prefix_caching = true,
                                                           bool top_logits = true) {
  auto e = Engine::load(config(kv_memory, prefix_caching, top_logits));
  std::vector<Output> out(reqs.size());
  size_t next = 0;
  int step = 0;
  while (true) {
    // Arrivals: 1-3 requests every other step.
    if (step % 2 == 0)
      for (size_t k = 0; (burst || k < 1 + static_cast<size_t>(step % 3)) && next < reqs.size(); ++k, ++next) {
        Output& o = out[next];
        e->submit(reqs[next], collect(o));
      }
    const bool ran = e->step();
    ++step;
    if (!ran && next == reqs.size()) break;
  }
  return {out, e->metrics()};
}

void expect_same(const std::vector<Output>& got, const std::vector<Output>& want) {
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i;
    EXPECT_EQ(got[i].logprobs, want[i].logprobs) << "request " << i;
    EXPECT_EQ(got[i].text, want[i].text) << "request " << i;
    EXPECT_EQ(got[i].finish, want[i].finish) << "request " << i;
  }
}

class EngineBatching : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(model_path())) return;
    auto probe = Engine::load(config());
    reqs_ = make_requests(*probe);
    kv_bytes_per_token_ = probe->summary().kv_bytes_per_token;
    probe.reset();
    alone_ = run_alone(reqs_);
    size_t n = 0;
    for (const auto& o : alone_) n += o.tokens.size();
    EXPECT_GT(n, 300u);  // the comparison has something to compare
  }
  void SetUp() override {
    if (!std::filesystem::exists(model_path())) GTEST_SKIP() << "model file absent: " << model_path();
  }
  static inline std::vector<GenerateRequest> reqs_;
  static inline std::vector<Output> alone_;
  static inline size_t kv_bytes_per_token_ = 0;
};

TEST_F(EngineBatching, SameTokensAloneAndAmongOthers) {
  const auto [together, m] = run_together(reqs_, 64 * 1024 * kv_bytes_per_token_);
  expect_same(together, alone_);
  EXPECT_GT(m.prefix_hit_tokens, 0);
  EXPECT_EQ(m.preemptions, 0);
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(m.running + m.waiting, 0);
  EXPECT_EQ(m.requests_finished, 32);
}

// A pool of one context (1024 tokens) shared by all of them, arriving at once: preemption by recompute, same results.
TEST_F(EngineBatching, PreemptionByRecomputeGivesTheSameTokens) {
  // Without the prefix cache (whose sharing would keep the burst within the pool).
  const auto [together, m] = run_together(reqs_, 1024 * kv_bytes_per_token_, /*burst=*/true, /*prefix_caching=*/false);
  expect_same(together, alone_);
  EXPECT_GT(m.preemptions, 0);
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(m.requests_finished, 32);
}

// Sampling from each row's best logits alone (greedy and top-k rows, when no row of the pass needs
// its whole row) picks the same tokens as sampling from whole rows: the requests without
// log-probabilities, one of them (among the last to arrive) with a repetition penalty: whole rows
// for the passes it is in.
TEST_F(EngineBatching, SamplingFromTheBestLogitsGivesTheSameTokens) {
  std::vector<GenerateRequest> reqs = reqs_;
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].top_logprobs = -1;
    if (i == reqs.size() - 2) reqs[i].sampling.repetition_penalty = 1.2f;
  }
  const auto [best, mb] = run_together(reqs, 64 * 1024 * kv_bytes_per_token_, false, true, /*top_logits=*/true);
  const auto [whole, mw] = run_together(reqs, 64 * 1024 * kv_bytes_per_token_, false, true, /*top_logits=*/false);
  expect_same(best, whole);
  EXPECT_GT(mb.tokens_from_top_logits, 100);
  EXPECT_LT(mb.tokens_from_top_logits, mb.generated_tokens);  // the penalised requests' passes: whole rows
  EXPECT_EQ(mw.tokens_from_top_logits, 0);
}

}  // namespace
}  // namespace tern

namespace tern {
namespace {

// abort_all ends queued and running requests alike, every sink hears it, and no block stays held.
TEST_F(EngineBatching, AbortAllEndsEveryRequest) {
  auto e = Engine::load(config());
  int finished = 0;
  for (int i = 0; i < 4; ++i)
    e->submit(reqs_[static_cast<size_t>(i)], [&](const RequestEvent& ev) {
      if (ev.finished) {
        EXPECT_EQ(ev.finish, FinishReason::Cancelled);
        ++finished;
      }
      return true;
    });
  e->step();
  e->step();
  e->submit(reqs_[4], [&](const RequestEvent& ev) {
    finished += ev.finished;
    return true;
  });
  e->abort_all();
  EXPECT_EQ(finished, 5);
  const EngineMetrics m = e->metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(m.running + m.waiting, 0);
  EXPECT_FALSE(e->step());
}

}  // namespace
}  // namespace tern
