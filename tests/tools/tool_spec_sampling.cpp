// Samples N requests (seeds seed0, seed0 + 1, ...) for one prompt, batched, and prints each one's
// generated token ids on a line (comma-separated): the Python tests compare the distributions with
// and without speculative decoding.
//   tool_spec_sampling MODEL IDS N MAX_TOKENS [--spec S] [--k K] [--temp T] [--top-k K] [--top-p P]
//                      [--seed0 S]
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "tern/engine.h"
#include "token_ids.h"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: tool_spec_sampling MODEL IDS N MAX_TOKENS [--spec S] [--k K] [--temp T] ...\n");
    return 2;
  }
  try {
    tern::EngineConfig c{.model_path = argv[1], .n_threads = 2, .max_running = 256};
    tern::SamplingParams sp{.temperature = 1, .top_k = 0, .top_p = 1, .min_p = 0};
    uint64_t seed0 = 1;
    std::string spec;
    int k = 4;
    for (int i = 5; i + 1 < argc; i += 2) {
      const std::string a = argv[i], v = argv[i + 1];
      if (a == "--spec") spec = v;
      else if (a == "--k") k = std::stoi(v);
      else if (a == "--temp") sp.temperature = std::stof(v);
      else if (a == "--top-k") sp.top_k = std::stoi(v);
      else if (a == "--top-p") sp.top_p = std::stof(v);
      else if (a == "--seed0") seed0 = std::stoull(v);
      else tern::fail("unknown option {}", a);
    }
    if (!spec.empty()) {
      c.speculative = tern::parse_speculative(spec);
      c.speculative.k = k;
      c.speculative.adaptive = false;
      c.speculative.max_batch = -1;
    }
    const std::vector<int32_t> ids = tern::test_tools::parse_ids(argv[2]);
    const int n = std::stoi(argv[3]), max_tokens = std::stoi(argv[4]);
    auto engine = tern::Engine::load(c);
    std::vector<std::vector<int32_t>> out(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      tern::GenerateRequest r;
      r.prompt = ids;
      r.max_tokens = max_tokens;
      r.ignore_eos = true;
      r.sampling = sp;
      r.sampling.seed = seed0 + static_cast<uint64_t>(i);
      engine->submit(r, [&out, i](const tern::RequestEvent& e) {
        if (e.has_token) out[static_cast<size_t>(i)].push_back(e.token);
        return true;
      });
    }
    while (engine->step()) {
    }
    for (const auto& toks : out) {
      for (size_t j = 0; j < toks.size(); ++j) std::printf(j ? ",%d" : "%d", toks[j]);
      std::printf("\n");
    }
    const tern::EngineMetrics m = engine->metrics();
    std::fprintf(stderr, "drafted %lld accepted %lld passes %lld\n", static_cast<long long>(m.spec_draft_tokens),
                 static_cast<long long>(m.spec_accepted_tokens), static_cast<long long>(m.spec_verify_passes));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tool_spec_sampling: %s\n", e.what());
    return 1;
  }
  return 0;
}
