// The CUDA backend against the CPU backend on the default model, end to end through the engine:
// greedy continuations of five prompts, and (teacher-forced on the CPU's tokens) top-1 agreement of
// the logits at every generated position, with the largest logit differences. Skipped without a GPU.
// Passes of at most 16 tokens, so that the GPU takes its decode-sized matmuls throughout (longer
// prefill chunks go through cuBLAS with f16 inputs).
//
// Exact activations (f32 matmul inputs on both): the two differ only in summation order, and must
// agree on at least 99% of positions. The default (inputs rounded to 8-bit blocks as llama.cpp
// does) is chaotic in a way no implementation can avoid: a last-bit difference before rounding
// moves a level, and with 30 layers that shows in the logits. Measured on this model, the scalar
// reference backend, which rounds exactly as the CPU backend does and differs only in summation
// order and precision, agrees with the CPU backend on 96.9% of these positions (mean largest logit
// difference 0.77); the GPU is held to 95%.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>

#include "backends/cuda/cuda_backend.h"
#include "request_output.h"
#include "model_files.h"
#include "tern/engine.h"

using namespace tern;

namespace {

int32_t argmax(const float* row, int64_t n) { return static_cast<int32_t>(std::max_element(row, row + n) - row); }

struct Agreement {
  int identical = 0, agree = 0, total = 0;
  double max_diff = 0, mean_diff = 0;
};

// The first n_prompts prompts, n_tokens generated tokens each.
Agreement compare_backends(bool exact, size_t n_prompts = 5, int n_tokens = 64) {
  const std::string model = test_files::default_model_path();
  EngineConfig c;  // (not a designated initialiser: GCC 12 warns on the members it skips)
  c.model_path = model;
  c.max_batch_tokens = 16;
  c.exact_activations = exact;
  c.backend = "cpu";
  auto cpu = Engine::load(c);
  c.backend = "cuda";
  auto gpu = Engine::load(c);
  const char* prompts[] = {
      "The capital of France is",
      "Write a short poem about the sea.\n",
      "def fibonacci(n):\n",
      "Once upon a time, in a small village by the mountains,",
      "Explain why the sky is blue in two sentences.",
  };
  const int kTokens = n_tokens;
  Agreement r;
  double sum_diff = 0;
  for (const char* p : std::span(prompts).first(std::min(n_prompts, std::size(prompts)))) {
    GenerateRequest g;
    g.prompt = cpu->tokenize(p);
    g.max_tokens = kTokens;
    g.ignore_eos = true;
    g.sampling.temperature = 0;
    const auto a = cpu->generate(g).tokens, b = gpu->generate(g).tokens;
    EXPECT_EQ(a.size(), static_cast<size_t>(kTokens));
    EXPECT_EQ(b.size(), static_cast<size_t>(kTokens));
    r.identical += a == b;
    const size_t same = std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin();
    // Teacher forcing on the CPU's continuation: the logits that predicted each generated token.
    std::vector<int32_t> ids = g.prompt;
    ids.insert(ids.end(), a.begin(), a.end() - 1);
    const size_t first = g.prompt.size() - 1;
    const auto lc = cpu->logits(ids, first), lg = gpu->logits(ids, first);
    const int64_t V = cpu->summary().n_vocab;
    EXPECT_EQ(lc.size(), lg.size());
    for (size_t row = 0; row * V < std::min(lc.size(), lg.size()); ++row) {
      r.agree += argmax(lc.data() + row * V, V) == argmax(lg.data() + row * V, V);
      ++r.total;
      double d = 0;
      for (int64_t i = 0; i < V; ++i) d = std::max(d, static_cast<double>(std::fabs(lc[row * V + i] - lg[row * V + i])));
      r.max_diff = std::max(r.max_diff, d);
      sum_diff += d;
    }
    std::printf("  %-50.50s greedy tokens identical up to %zu of %d\n", p, same, kTokens);
  }
  r.mean_diff = r.total ? sum_diff / r.total : 0;
  std::printf("cuda vs cpu (%s): %d of %zu greedy continuations identical; top-1 agreement %d/%d (%.1f%%); largest "
              "|logit difference| per position: max %.4f, mean %.4f\n",
              exact ? "exact activations" : "8-bit activations", r.identical,
              std::min(n_prompts, std::size(prompts)), r.agree, r.total, 100.0 * r.agree / r.total,
              r.max_diff, r.mean_diff);
  return r;
}

}  // namespace

TEST(CudaModel, ExactActivationsAgreeWithTheCpuBackend) {
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA model test skipped: " << why;
  const Agreement r = compare_backends(true);
  EXPECT_GE(r.agree, 0.99 * r.total);
}

// The exact check at a size the emulator runs in about a minute (ctest's test_cuda_model_emulator):
// two prompts, 16 tokens each.
TEST(CudaModel, ShortExactRunAgreesWithTheCpuBackend) {
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA model test skipped: " << why;
  const Agreement r = compare_backends(true, 2, 16);
  EXPECT_GE(r.agree, 0.99 * r.total);
  EXPECT_LT(r.max_diff, 0.1);
}

TEST(CudaModel, RoundedActivationsAgreeWithTheCpuBackendAsTheReferenceDoes) {
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA model test skipped: " << why;
  const Agreement r = compare_backends(false);
  EXPECT_GE(r.agree, 0.95 * r.total);
}

// Continuous batching on the CUDA backend: each request gives the same tokens and log-probabilities,
// bit for bit, alone as among the others (DESIGN.md, "Deterministic by default"), while every pass
// stays under the sizes at which the backend changes algorithm: passes of up to 15 tokens mix
// prompt chunks with decodes through the GEMV kernels (several tokens per launch) and the split-KV
// decode attention (several items), and two prompts share a prefix. Not yet so above them: a run of
// 16 tokens of one sequence goes to the FlashAttention tiles and a pass of 32 tokens to cuBLAS on
// f16, whose results differ in the last bits from the decode paths', and the chunking that decides
// which a token takes depends on the other requests (test_ops marks the CUDA backend
// batch_invariant = false). Small enough for the emulator (ctest's test_cuda_model_emulator).
TEST(CudaModel, BatchedRequestsMatchTheirSoloRuns) {
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA model test skipped: " << why;
  EngineConfig c;
  c.model_path = test_files::default_model_path();
  c.n_ctx = 512;
  c.max_batch_tokens = 15;
  c.backend = "cuda";
  auto e = Engine::load(c);
  const std::string shared = "You are a careful assistant. Answer briefly and say when you do not know. ";
  const std::string prompts[] = {shared + "Who built the Analytical Engine?", "def fibonacci(n):\n",
                                 shared + "What was ENIAC?", "x"};
  std::vector<GenerateRequest> reqs;
  for (size_t i = 0; i < std::size(prompts); ++i) {
    GenerateRequest r;
    r.prompt = e->tokenize(prompts[i]);
    r.max_tokens = 3 + static_cast<int>(i);
    r.ignore_eos = true;
    r.top_logprobs = 2;
    if (i == 1) r.sampling = {.temperature = 0.9f, .top_k = 40, .top_p = 0.95f, .seed = 7};
    else r.sampling.temperature = 0;
    reqs.push_back(std::move(r));
  }
  std::vector<test_files::Output> alone(reqs.size()), together(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    e->submit(reqs[i], test_files::collect(alone[i]));
    while (e->step()) {
    }
  }
  // A fresh engine, so that the batch computes the prompts rather than finding them cached.
  auto f = Engine::load(c);
  for (size_t i = 0; i < reqs.size(); ++i) f->submit(reqs[i], test_files::collect(together[i]));
  while (f->step()) {
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(together[i].tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(together[i].logprobs, alone[i].logprobs) << "request " << i;
    EXPECT_EQ(together[i].tokens.size(), static_cast<size_t>(reqs[i].max_tokens)) << "request " << i;
  }
  EXPECT_EQ(f->metrics().kv_blocks_used, 0);
}

