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

#include "backends/cuda/cuda_backend.h"
#include "model_files.h"
#include "tern/engine.h"

using namespace tern;

namespace {

int32_t argmax(const float* row, int64_t n) { return static_cast<int32_t>(std::max_element(row, row + n) - row); }

struct Agreement {
  int identical = 0, agree = 0, total = 0;
  double max_diff = 0, mean_diff = 0;
};

Agreement compare_backends(bool exact) {
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
  constexpr int kTokens = 64;
  Agreement r;
  double sum_diff = 0;
  for (const char* p : prompts) {
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
  std::printf("cuda vs cpu (%s): %d of 5 greedy continuations identical; top-1 agreement %d/%d (%.1f%%); largest "
              "|logit difference| per position: max %.4f, mean %.4f\n",
              exact ? "exact activations" : "8-bit activations", r.identical, r.agree, r.total, 100.0 * r.agree / r.total,
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

TEST(CudaModel, RoundedActivationsAgreeWithTheCpuBackendAsTheReferenceDoes) {
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA model test skipped: " << why;
  const Agreement r = compare_backends(false);
  EXPECT_GE(r.agree, 0.95 * r.total);
}
