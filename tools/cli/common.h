// Options and helpers shared by the CLI's subcommands.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "tern/engine.h"

namespace tern::cli {

std::string default_model_path();  // $TERN_MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
// The whole file; throws naming it (and `what` it was for) when it cannot be read.
std::string read_text_file(const std::string& path, const char* what);

struct ModelOptions {
  std::string model;
  int threads = 0;
  int ctx = 0;
  int batch = 512;
  std::string backend;        // --device; empty: cpu, or what --n-gpu-layers implies
  int gpu_layers = kNoGpuLayers;  // --n-gpu-layers (-ngl)
  static constexpr int kNoGpuLayers = -2;
  std::string kv_type = "f16";
  std::string spec;  // --spec: ngram, layerskip:L, draft:FILE
  int spec_k = 0;
  int spec_max_batch = 0;
  EngineConfig engine_config() const;
};

struct SamplingOptions {
  SamplingParams p;
  bool seed_given = false;
  int64_t seed = -1;
  SamplingParams resolved();  // fills a random seed when none was given
};

void add_model_options(CLI::App& app, ModelOptions& o);
// llama.cpp's spelling "-ngl N" as --n-gpu-layers N (CLI11 takes single-dash options of one letter
// only), in place.
void rewrite_llama_options(int argc, char** argv);
void add_sampling_options(CLI::App& app, SamplingOptions& o);
void add_speculative_options(CLI::App& app, ModelOptions& o);

// Subcommands: each registers itself and returns the callback to run after parsing.
void register_run(CLI::App& app);
void register_chat(CLI::App& app);
void register_info(CLI::App& app);
void register_bench(CLI::App& app);
void register_quantize(CLI::App& app);
void register_serve(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_imatrix(CLI::App& app);

}  // namespace tern::cli
