#include "common.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "formats/gguf/gguf.h"

namespace tern::cli {

std::string default_model_path() {
  if (const char* dir = std::getenv("TERN_MODELS"); dir && *dir)
    return std::string(dir) + "/SmolLM2-135M-Instruct.Q4_1.gguf";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.cache/tern/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string read_text_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  TERN_CHECK(in, "{}: cannot read the {} file", path, what);
  std::stringstream ss;
  ss << in.rdbuf();
  TERN_CHECK(!in.bad(), "{}: error reading the {} file", path, what);
  return ss.str();
}

namespace {

// The backend --device and --n-gpu-layers ask for together. tern runs a model's every layer on one
// GPU or none, so a layer count between 0 and the model's is an error, not a silent full offload
// (a user who asked for part of the model on the GPU may not have memory for all of it).
std::string resolve_backend(const std::string& device, int gpu_layers, const std::string& model_path) {
  if (gpu_layers == ModelOptions::kNoGpuLayers) return device.empty() ? "cpu" : device;
  const std::string implied = gpu_layers == 0 ? "cpu" : "cuda";
  TERN_CHECK(device.empty() || device == implied, "--n-gpu-layers {} asks for the {} backend, --device for {}",
             gpu_layers, implied, device);
  if (gpu_layers > 0) {
    const auto f = gguf::File::open(model_path);
    const auto arch = f.find_string("general.architecture");
    const int64_t layers = arch ? f.find_int(std::string(*arch) + ".block_count").value_or(0) : 0;
    TERN_CHECK(layers <= 0 || gpu_layers >= layers,
               "{}: --n-gpu-layers {}: the model has {} layers and tern runs all of them on the GPU or none; pass "
               "-ngl {} (or -1, or --device cuda) for the GPU, -ngl 0 for the CPU",
               model_path, gpu_layers, layers, layers);
  }
  return implied;
}

}  // namespace

void rewrite_llama_options(int argc, char** argv) {
  static char ngl[] = "--n-gpu-layers";
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "-ngl") == 0) argv[i] = ngl;
}

EngineConfig ModelOptions::engine_config() const {
  const std::string path = model.empty() ? default_model_path() : model;
  EngineConfig c{.model_path = path,
                 .n_threads = threads,
                 .n_ctx = ctx,
                 .max_batch_tokens = batch,
                 .kv_type = kv_type,
                 .backend = resolve_backend(backend, gpu_layers, path)};
  if (!spec.empty()) c.speculative = parse_speculative(spec);
  c.speculative.k = spec_k;
  c.speculative.max_batch = spec_max_batch;
  return c;
}

SamplingParams SamplingOptions::resolved() {
  SamplingParams r = p;
  r.seed = seed >= 0 ? static_cast<uint64_t>(seed) : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  return r;
}

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option("-m,--model", o.model, "GGUF model file (default: the fetched SmolLM2-135M-Instruct)");
  app.add_option("-t,--threads", o.threads, "threads (default: all hardware threads)")->check(CLI::Range(0, 1024));
  app.add_option("-c,--ctx-size", o.ctx, "context size in tokens (default: the model's, at most 4096)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("-b,--batch-size", o.batch, "prompt tokens per forward pass")->check(CLI::Range(1, 65536));
  app.add_option("--backend,--device", o.backend,
                 "cpu (default), cuda (every layer on the GPU) or ref (the scalar reference; slow)")
      ->check(CLI::IsMember({"cpu", "cuda", "ref"}));
  app.add_option("--n-gpu-layers,--gpu-layers", o.gpu_layers,
                 "llama.cpp's -ngl (also accepted): 0 runs on the CPU; the model's layer count or more, or -1, "
                 "every layer on the GPU (--device cuda); tern does not split a model between the two")
      ->check(CLI::Range(-1, 1 << 20));
  app.add_option("--kv-type", o.kv_type,
                 "KV cache storage: f16 (default), f32, q8_0 (8-bit, a scale per 32 values; alias int8) or fp8 (E4M3)")
      ->check(CLI::IsMember({"f16", "f32", "q8_0", "int8", "fp8", "fp8_e4m3"}));
}

void add_speculative_options(CLI::App& app, ModelOptions& o) {
  app.add_option("--spec", o.spec,
                 "speculative decoding: ngram (prompt lookup), layerskip:L (the model's first L layers draft) or "
                 "draft:FILE (a smaller model with the same vocabulary)");
  app.add_option("--spec-k", o.spec_k, "most tokens drafted per step (default: 8 for ngram, 4 otherwise; adapts to "
                                       "the acceptance rate)")
      ->check(CLI::Range(1, 32));
  app.add_option("--spec-max-batch", o.spec_max_batch,
                 "speculate only while at most this many sequences run (default 4; -1: always)")
      ->check(CLI::Range(-1, 4096));
}

void add_sampling_options(CLI::App& app, SamplingOptions& o) {
  app.add_option("--temp", o.p.temperature, "temperature; 0 is greedy")->check(CLI::Range(0.0f, 100.0f));
  app.add_option("--top-k", o.p.top_k, "top-k; 0 is off")->check(CLI::Range(0, 1 << 24));
  app.add_option("--top-p", o.p.top_p, "top-p; 1 is off")->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--min-p", o.p.min_p, "min-p; 0 is off")->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--repeat-penalty", o.p.repetition_penalty, "repetition penalty; 1 is off")
      ->check(CLI::Range(0.0f, 10.0f));
  app.add_option("--presence-penalty", o.p.presence_penalty, "presence penalty")->check(CLI::Range(-2.0f, 2.0f));
  app.add_option("--frequency-penalty", o.p.frequency_penalty, "frequency penalty")->check(CLI::Range(-2.0f, 2.0f));
  app.add_option("--repeat-last-n", o.p.penalty_last_n, "tokens the penalties look back over")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("-s,--seed", o.seed, "random seed (default: random)")->check(CLI::Range(int64_t{0}, INT64_MAX));
}

}  // namespace tern::cli
