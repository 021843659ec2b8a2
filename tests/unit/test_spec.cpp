// Speculative decoding: the verifier's rejection sampling against the distribution it must follow,
// the n-gram proposer, the draft-length policy, and on the real default model, greedy outputs and
// KV caches identical with and without each proposer, alone and in a batch.
#include <gtest/gtest.h>

#include "model_files.h"
#include "request_output.h"

#include <cmath>
#include <cstring>
#include <map>

#include "core/error.h"
#include "engine/engine_impl.h"
#include "spec/draft_length.h"
#include "spec/proposer.h"
#include "spec/verifier.h"
#include "tern/engine.h"

namespace tern {

struct EngineTestAccess {
  using Impl = Engine::Impl;
  static Impl& impl(Engine& e) { return *e.impl_; }
};

namespace {

using test_files::collect;
using test_files::Output;

// Chi-square critical value at significance 1e-3 (Wilson-Hilferty), for `df` degrees of freedom.
double chi2_critical(int df) {
  const double z = 3.0902, k = df;
  const double c = 1 - 2 / (9 * k) + z * std::sqrt(2 / (9 * k));
  return k * c * c * c;
}

// Pearson's statistic of `counts` (n draws) against probabilities `p`; categories with expected
// counts under 5 are pooled.
std::pair<double, int> chi2(const std::vector<int>& counts, const std::vector<double>& p, int n) {
  double stat = 0, pooled_obs = 0, pooled_exp = 0;
  int df = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    const double e = p[i] * n;
    if (e < 5) {
      pooled_obs += counts[i], pooled_exp += e;
      continue;
    }
    stat += (counts[i] - e) * (counts[i] - e) / e;
    ++df;
  }
  if (pooled_exp > 0) {
    stat += (pooled_obs - pooled_exp) * (pooled_obs - pooled_exp) / std::max(pooled_exp, 1e-9);
    ++df;
  }
  return {stat, df};
}

std::vector<TokenProb> dist(std::vector<double> w) {
  double s = 0;
  for (double x : w) s += x;
  std::vector<TokenProb> d;
  for (size_t i = 0; i < w.size(); ++i)
    if (w[i] > 0) d.push_back({static_cast<int32_t>(i), w[i] / s});
  return d;
}

// One speculative position: draw x ~ q, keep it or resample; the result must follow p.
TEST(Verifier, RejectionSamplingFollowsTheTarget) {
  constexpr int V = 8, N = 200000;
  const std::vector<TokenProb> p = dist({0.30, 0.20, 0.15, 0.10, 0.10, 0.08, 0.07, 0});  // token 7 outside p
  const std::vector<std::vector<TokenProb>> qs = {
      dist({0.05, 0.05, 0.4, 0.1, 0.1, 0.1, 0.1, 0.1}),  // differs everywhere, mass where p has none
      dist({0.30, 0.20, 0.15, 0.10, 0.10, 0.08, 0.07, 0}),  // q == p: every draft kept
      dist({0, 0, 0, 1, 0, 0, 0, 0}),                       // one-hot (a deterministic proposer)
  };
  std::vector<double> pv(V, 0);
  for (const TokenProb& t : p) pv[static_cast<size_t>(t.id)] = t.p;
  for (size_t qi = 0; qi < qs.size(); ++qi) {
    spec::Verifier ver(V);
    Sampler rng({.temperature = 1, .seed = 11 + qi});
    std::vector<int> counts(V, 0);
    int kept = 0;
    for (int i = 0; i < N; ++i) {
      const int32_t x = rng.draw(qs[qi]);
      int32_t out = x;
      if (ver.accept(p, qs[qi], x, rng)) ++kept;
      else out = ver.resample(p, qs[qi], x, rng);
      ++counts[static_cast<size_t>(out)];
    }
    const auto [stat, df] = chi2(counts, pv, N);
    EXPECT_LT(stat, chi2_critical(df)) << "q #" << qi;
    EXPECT_EQ(counts[7], 0);
    if (qi == 1) {
      EXPECT_EQ(kept, N);
    }
  }
  // An empty q means one-hot at the draft.
  spec::Verifier ver(V);
  Sampler rng({.temperature = 1, .seed = 5});
  std::vector<int> counts(V, 0);
  for (int i = 0; i < N; ++i) {
    const int32_t out = ver.accept(p, {}, 3, rng) ? 3 : ver.resample(p, {}, 3, rng);
    ++counts[static_cast<size_t>(out)];
  }
  const auto [stat, df] = chi2(counts, pv, N);
  EXPECT_LT(stat, chi2_critical(df));
}

// Greedy verification keeps a draft exactly when it is the target's argmax.
TEST(Verifier, GreedyKeepsOnlyTheArgmax) {
  spec::Verifier ver(4);
  Sampler s({.temperature = 0});
  std::vector<float> logits = {0.1f, 2.0f, 1.9f, -1};
  const auto p = s.distribution(logits, {});
  ASSERT_EQ(p.size(), 1u);
  EXPECT_TRUE(ver.accept(p, {}, 1, s));
  EXPECT_FALSE(ver.accept(p, {}, 2, s));
  EXPECT_EQ(ver.resample(p, {}, 2, s), 1);
  const std::vector<TokenProb> q = dist({0.2, 0.1, 0.7, 0});
  EXPECT_EQ(ver.resample(p, q, 2, s), 1);
}

TEST(Ngram, ProposesWhatFollowedTheLatestMatch) {
  auto prop = spec::make_ngram_proposer({.max_ngram = 3, .min_ngram = 2});
  const std::vector<int32_t> t = {5, 1, 2, 3, 9, 9, 1, 2, 3, 4, 7, 8, 0, 1, 2, 3};
  spec::Draft d;
  spec::DraftRequest r{.seq_id = 1, .tokens = t, .max_tokens = 3, .out = &d};
  prop->propose(std::span(&r, 1));
  EXPECT_EQ(d.tokens, (std::vector<int32_t>{4, 7, 8}));  // the later "1 2 3" wins
  EXPECT_FALSE(d.sampled);
  const std::vector<int32_t> none = {1, 2, 3, 4, 5, 6};
  r.tokens = none;
  prop->propose(std::span(&r, 1));
  EXPECT_TRUE(d.tokens.empty());
  const std::vector<int32_t> shortfall = {1, 2, 9, 1, 2};  // only one token follows the match
  r.tokens = shortfall;
  r.max_tokens = 8;
  prop->propose(std::span(&r, 1));
  EXPECT_EQ(d.tokens, (std::vector<int32_t>{9, 1, 2}));
}

TEST(DraftLength, FollowsTheAcceptanceRate) {
  spec::DraftLength good(8, 0.1, true), bad(8, 0.5, true), fixed(5, 0.5, false);
  for (int i = 0; i < 50; ++i) good.observe(8, 8), bad.observe(4, 0);
  EXPECT_EQ(good.next(), 8);
  // Not speculating, but trying one token now and then: every 8th step, then (each probe
  // rejected) every 16th, 32nd and 64th.
  std::vector<int> probes;
  for (int i = 1; i <= 8 + 16 + 32 + 64 + 64; ++i)
    if (bad.next() == 1) {
      probes.push_back(i);
      bad.observe(1, 0);
    }
  EXPECT_EQ(probes, (std::vector<int>{8, 24, 56, 120, 184}));
  EXPECT_EQ(fixed.next(), 5);
  EXPECT_NEAR(spec::expected_tokens(0.5, 2), 1.75, 1e-12);
}

// ---- The engine on the real default model ----

// Twenty varied prompts: copy-heavy ones (where n-gram drafts are kept) and open ones.
std::vector<std::string> prompts() {
  const std::string passage =
      "The river rises in the hills north of the town, runs south through the old mill, and meets the sea at "
      "the harbour, where the fishing boats come in every morning before dawn.";
  std::vector<std::string> p = {
      "Repeat this sentence exactly: " + passage,
      "Fix the spelling: The rivr rises in the hils north of the towne and runs south.",
      "Summarise in one sentence: " + passage,
      "List the numbers from 1 to 20, separated by commas:",
      "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
      "Translate to French: Good morning, how are you?",
      "Write a haiku about autumn leaves.",
      "What is the capital of Japan?",
      "Explain what a hash table is.",
      "Once upon a time, in a small village by the sea,",
      "Q: What is 12 times 12?\nA:",
      "The quick brown fox jumps over the lazy dog. The quick brown fox",
      "Name three primary colours.",
      "a b c d e f g a b c d e f g a b c",
      "Continue the list: Monday, Tuesday, Wednesday,",
      "Why is the sky blue?",
      "Rewrite in the past tense: I walk to the market and I buy some bread.",
      "<html><body><h1>Title</h1><p>Text</p></body></html>\nThe same page with a second paragraph:\n<html>",
      "Give me a short recipe for pancakes.",
      "x"};
  return p;
}

EngineConfig config(const std::string& spec) {
  EngineConfig c{.model_path = test_files::default_model_path(), .n_threads = 2, .n_ctx = 512, .max_batch_tokens = 64};
  if (!spec.empty()) {
    c.speculative = parse_speculative(spec);
    c.speculative.max_batch = -1;  // speculate in a batch too
    c.speculative.adaptive = false;  // always draft k: the most drafts, the most chances to go wrong
    c.speculative.k = 5;
  }
  return c;
}

std::vector<GenerateRequest> requests(Engine& e) {
  std::vector<GenerateRequest> r;
  for (const std::string& p : prompts()) {
    GenerateRequest g;
    g.prompt = e.tokenize(p);
    g.max_tokens = 24;
    g.sampling.temperature = 0;
    g.top_logprobs = 1;
    r.push_back(std::move(g));
  }
  return r;
}

std::vector<Output> run(const std::string& spec, bool batched, EngineMetrics* metrics = nullptr) {
  auto e = Engine::load(config(spec));
  const auto reqs = requests(*e);
  std::vector<Output> out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    e->submit(reqs[i], collect(out[i]));
    if (!batched)
      while (e->step()) {
      }
  }
  while (e->step()) {
  }
  const EngineMetrics m = e->metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  if (metrics) *metrics = m;
  return out;
}

class SpecGreedy : public ::testing::TestWithParam<std::string> {};

TEST_P(SpecGreedy, SameTokensAloneAndBatched) {
  static const std::vector<Output> plain = run("", false);
  for (bool batched : {false, true}) {
    EngineMetrics m;
    const std::vector<Output> spec = run(GetParam(), batched, &m);
    for (size_t i = 0; i < plain.size(); ++i) EXPECT_EQ(spec[i], plain[i]) << "prompt " << i << (batched ? " batched" : " alone");
    EXPECT_GT(m.spec_draft_tokens, 0);
    EXPECT_GT(m.spec_accepted_tokens, 0);
    // Rejections were exercised too, except by a model drafting for itself (all kept: its own KV cache
    // stayed right through every rollback).
    if (GetParam().starts_with("draft:")) {
      EXPECT_EQ(m.spec_accepted_tokens, m.spec_draft_tokens);
    } else {
      EXPECT_LT(m.spec_accepted_tokens, m.spec_draft_tokens);
    }
    EXPECT_EQ(m.spec_emitted_tokens, m.spec_accepted_tokens + m.spec_verify_passes);
  }
}

std::string draft_spec() { return "draft:" + test_files::default_model_path(); }

INSTANTIATE_TEST_SUITE_P(Proposers, SpecGreedy, ::testing::Values("ngram", "layerskip:12", draft_spec()),
                         [](const auto& info) { return info.param.substr(0, info.param.find(':')); });

// The keys and values a sequence holds after many accept/reject rounds are those of a plain run,
// bit for bit, and no slot of a rejected draft is still held.
TEST(SpecKv, CacheEqualsPlainRun) {
  auto snapshot = [](const std::string& spec) {
    auto e = Engine::load(config(spec));
    EngineTestAccess::Impl& m = EngineTestAccess::impl(*e);
    GenerateRequest g;
    g.prompt = e->tokenize(prompts()[0]);
    g.max_tokens = 40;
    g.ignore_eos = true;
    g.sampling.temperature = 0;
    std::vector<uint8_t> kv;
    int32_t n = 0;
    RequestId id = 0;
    id = e->submit(g, [&](const RequestEvent& ev) {
      if (!ev.has_token || ev.generated_tokens != g.max_tokens) return true;
      const Sequence& s = m.active.at(id)->seq;
      EXPECT_EQ(s.kv.n_slots, s.n_computed);
      n = s.n_computed;
      const int32_t bs = m.kv->block_size();
      for (int l = 0; l < m.summary.n_layer; ++l)
        for (const TensorView& t : {m.kv_storage->k(l), m.kv_storage->v(l)})
          for (int32_t pos = 0; pos < s.n_computed; ++pos) {
            const int32_t slot = s.kv.blocks[static_cast<size_t>(pos / bs)] * bs + pos % bs;
            const auto* p = static_cast<const uint8_t*>(t.row(0, slot));
            kv.insert(kv.end(), p, p + t.nb[2]);
          }
      return true;
    });
    while (e->step()) {
    }
    return std::pair{kv, n};
  };
  const auto plain = snapshot("");
  ASSERT_GT(plain.second, 0);
  for (const std::string spec : {"ngram", "layerskip:8"}) {
    const auto s = snapshot(spec);
    EXPECT_EQ(s.second, plain.second) << spec;
    EXPECT_TRUE(s.first == plain.first) << spec << ": the KV cache differs from the plain run's";
  }
}

TEST(SpecConfig, ParsesAndNamesFaults) {
  EXPECT_EQ(parse_speculative("ngram").method, "ngram");
  EXPECT_EQ(parse_speculative("layerskip:7").layers, 7);
  EXPECT_EQ(parse_speculative("draft:/x/y.gguf").draft_model, "/x/y.gguf");
  EXPECT_EQ(parse_speculative("ngram:1-3").ngram_min, 1);
  EXPECT_EQ(parse_speculative("ngram:1-3").ngram_max, 3);
  for (const char* bad : {"", "ngram:3", "ngram:3-1", "ngram:0-2", "ngram:", "layerskip:0", "layerskip:", "layerskip:x", "draft:", "medusa"}) {
    try {
      parse_speculative(bad);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("spec"), std::string::npos) << e.what();
    }
  }
  EngineConfig c = config("layerskip:99");
  EXPECT_THROW(Engine::load(c), Error);
}

}  // namespace
}  // namespace tern
