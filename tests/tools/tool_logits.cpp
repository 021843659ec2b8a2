// Writes tern's logits for a token sequence as raw little-endian f32 [n_tokens][n_vocab], for the
// Python reference checks.   tool_logits MODEL IDS(comma-separated) OUT [--backend cpu|ref] [--threads N] [--batch N] [--exact 0|1]
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "tern/engine.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: tool_logits MODEL IDS OUT [--backend B] [--threads N]\n");
    return 2;
  }
  try {
    tern::EngineConfig c{.model_path = argv[1]};
    for (int i = 4; i + 1 < argc; i += 2) {
      if (!std::strcmp(argv[i], "--backend")) c.backend = argv[i + 1];
      else if (!std::strcmp(argv[i], "--threads")) c.n_threads = std::stoi(argv[i + 1]);
      else if (!std::strcmp(argv[i], "--batch")) c.max_batch_tokens = std::stoi(argv[i + 1]);
      else if (!std::strcmp(argv[i], "--exact")) c.exact_activations = std::string(argv[i + 1]) == "1";
    }
    std::vector<int32_t> ids;
    for (const char* p = argv[2]; *p;) {
      char* end;
      ids.push_back(static_cast<int32_t>(std::strtol(p, &end, 10)));
      p = *end ? end + 1 : end;
    }
    auto engine = tern::Engine::load(c);
    const auto logits = engine->logits(ids);
    FILE* f = std::fopen(argv[3], "wb");
    TERN_CHECK(f, "{}: cannot write", argv[3]);
    std::fwrite(logits.data(), sizeof(float), logits.size(), f);
    std::fclose(f);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tool_logits: %s\n", e.what());
    return 1;
  }
  return 0;
}
