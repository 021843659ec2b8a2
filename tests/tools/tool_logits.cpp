// Writes tern's logits for a token sequence as raw little-endian f32 [n_tokens][n_vocab], for the
// Python reference checks.   tool_logits MODEL IDS(comma-separated) OUT [--backend cpu|ref] [--threads N] [--batch N] [--exact 0|1]
// [--dump DIR]: also every named intermediate as DIR/<name>.f32 (raw, ggml order; a name seen again
// in a later chunk is appended) and its shape as a line "<name> ne0 ne1 ne2 ne3" of DIR/shapes.txt.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "tern/engine.h"
#include "token_ids.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: tool_logits MODEL IDS OUT [--backend B] [--threads N]\n");
    return 2;
  }
  try {
    tern::EngineConfig c;  // (not a designated initialiser: GCC 12 warns on the members it skips)
    c.model_path = argv[1];
    std::string dump_dir;
    for (int i = 4; i + 1 < argc; i += 2) {
      if (!std::strcmp(argv[i], "--backend")) c.backend = argv[i + 1];
      else if (!std::strcmp(argv[i], "--threads")) c.n_threads = std::stoi(argv[i + 1]);
      else if (!std::strcmp(argv[i], "--batch")) c.max_batch_tokens = std::stoi(argv[i + 1]);
      else if (!std::strcmp(argv[i], "--exact")) c.exact_activations = std::string(argv[i + 1]) == "1";
      else if (!std::strcmp(argv[i], "--dump")) dump_dir = argv[i + 1];
    }
    const std::vector<int32_t> ids = tern::test_tools::parse_ids(argv[2]);
    if (!dump_dir.empty()) {
      c.on_tensor = [&dump_dir](std::string_view name, std::span<const float> v, std::span<const int64_t> ne) {
        const std::string path = dump_dir + "/" + std::string(name) + ".f32";
        FILE* f = std::fopen(path.c_str(), "ab");
        TERN_CHECK(f, "{}: cannot write", path);
        std::fwrite(v.data(), sizeof(float), v.size(), f);
        std::fclose(f);
        FILE* s = std::fopen((dump_dir + "/shapes.txt").c_str(), "a");
        TERN_CHECK(s, "{}/shapes.txt: cannot write", dump_dir);
        std::fprintf(s, "%.*s %lld %lld %lld %lld\n", static_cast<int>(name.size()), name.data(),
                     static_cast<long long>(ne[0]), static_cast<long long>(ne[1]), static_cast<long long>(ne[2]),
                     static_cast<long long>(ne[3]));
        std::fclose(s);
      };
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
