// tern bench: prompt-processing and decode throughput measured as llama-bench measures them (random
// prompt tokens in one batch, then single-token decode steps from an empty context), with peak
// memory and a roofline line against this machine's measured ceilings (bench/machine).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "common.h"
#include "core/error.h"

namespace tern::cli {
namespace {

struct BenchOptions {
  ModelOptions model;
  int n_prompt = 512;
  int n_gen = 128;
  int depth = 0;  // context tokens before the timed prompt and decode (llama-bench's -d)
  int reps = 5;
  std::string output = "text";
  std::string machine_file;
  int parallel = 0;  // also decode this many sequences together (continuous batching)
};

constexpr int kParallelPrompt = 16;  // prompt tokens of each parallel sequence

// Aggregate decode tokens/s of n sequences generating n_gen tokens each through the engine's step
// loop, counted from the step after which every sequence has its first token (their prompts of
// kParallelPrompt random tokens are prefilled before that) to the last token.
double parallel_decode_tok_s(Engine& engine, int n, int n_gen, std::mt19937& rng) {
  using clock = std::chrono::steady_clock;
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(engine.summary().n_vocab - 1));
  int started = 0;
  int64_t tokens = 0, tokens_at_start = 0;
  for (int i = 0; i < n; ++i) {
    GenerateRequest g;
    for (int p = 0; p < kParallelPrompt; ++p) g.prompt.push_back(tok(rng));
    g.max_tokens = n_gen;
    g.ignore_eos = true;
    g.sampling.temperature = 0;
    engine.submit(std::move(g), [&](const RequestEvent& ev) {
      if (ev.has_token) {
        ++tokens;
        if (ev.generated_tokens == 1) ++started;
      }
      return true;
    });
  }
  clock::time_point t0;
  bool timing = false;
  while (engine.step()) {
    if (!timing && started == n) {
      timing = true;
      t0 = clock::now();
      tokens_at_start = tokens;
    }
  }
  const double secs = std::chrono::duration<double>(clock::now() - t0).count();
  return timing && secs > 0 ? static_cast<double>(tokens - tokens_at_start) / secs : 0.0;
}

struct Stats {
  std::vector<double> runs;
  double median() const {
    if (runs.empty()) return 0;
    std::vector<double> s = runs;
    std::sort(s.begin(), s.end());
    return s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]);
  }
  double min() const { return runs.empty() ? 0 : *std::min_element(runs.begin(), runs.end()); }
  double max() const { return runs.empty() ? 0 : *std::max_element(runs.begin(), runs.end()); }
  nlohmann::json json() const { return {{"median", median()}, {"min", min()}, {"max", max()}, {"runs", runs}}; }
};

size_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<size_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

// The ceilings bench/machine measured, at this thread count, or under the key "cuda" those of the
// GPU (bench/gpu-check measures them); absent if never measured.
struct Ceilings {
  double read_gbs = 0, fma_gflops = 0, int8_gops = 0;
};
std::optional<Ceilings> load_ceilings(const std::string& path, const std::string& t) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  try {
    const auto j = nlohmann::json::parse(in);
    auto at = [&](const char* key) {
      return j.contains(key) && j[key].contains(t) ? j[key][t].get<double>() : 0.0;
    };
    Ceilings c{at("read_gbs"), at("fma_gflops"), at("int8_gops")};
    if (c.read_gbs <= 0) return std::nullopt;
    return c;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tern bench: ignoring %s: %s\n", path.c_str(), e.what());
    return std::nullopt;
  }
}

std::string default_machine_file() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.cache/tern/bench/machine.json";
}

void run(BenchOptions& o) {
  TERN_CHECK(o.n_prompt > 0 || o.n_gen > 0, "nothing to measure: -p and -n are both 0");
  EngineConfig cfg = o.model.engine_config();
  cfg.max_batch_tokens = std::max(1, std::min(o.model.batch, std::max(o.n_prompt, 1)));
  cfg.n_ctx = std::max({o.model.ctx, o.depth + o.n_prompt + 1, o.depth + o.n_gen + 1});
  if (o.parallel > 0) {
    // One pool holding every parallel sequence (plus a block of slack each), all running at once.
    cfg.kv_memory_fraction = 0;
    cfg.n_ctx = std::max(cfg.n_ctx, o.parallel * (kParallelPrompt + o.n_gen + 32));
    cfg.max_running = std::max(cfg.max_running, o.parallel);
    cfg.max_batch_tokens = std::max(cfg.max_batch_tokens, o.parallel);
  }
  auto engine = Engine::load(cfg);
  const ModelSummary& s = engine->summary();
  const bool text = o.output == "text";

  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(s.n_vocab - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(std::max(o.n_prompt, 1)));
  for (auto& t : prompt) t = tok(rng);

  // Warm-up (page in the weights, grow scratch buffers), as llama-bench does.
  engine->time_passes(std::span(prompt).first(std::min<size_t>(prompt.size(), 64)), std::min(o.n_gen, 2));
  Stats pp, tg;
  for (int r = 0; r < o.reps; ++r) {
    const auto t =
        engine->time_passes(o.n_prompt > 0 ? std::span(prompt) : std::span(prompt).first(1), o.n_gen, o.depth);
    if (o.n_prompt > 0) pp.runs.push_back(o.n_prompt / t.prompt_seconds);
    if (o.n_gen > 0) tg.runs.push_back(o.n_gen / t.gen_seconds);
    if (text) std::fprintf(stderr, "\rtern bench: run %d/%d", r + 1, o.reps);
  }
  Stats par;
  for (int r = 0; o.parallel > 0 && o.n_gen > 0 && r < o.reps; ++r) {
    par.runs.push_back(parallel_decode_tok_s(*engine, o.parallel, o.n_gen, rng));
    if (text) std::fprintf(stderr, "\rtern bench: %d parallel sequences, run %d/%d", o.parallel, r + 1, o.reps);
  }
  if (text) std::fprintf(stderr, "\n");

  // Roofline: decode reads every weight once per token plus the K/V of the context so far (on
  // average half of n_gen positions); prefill multiplies every weight once per token.
  const double bytes_per_token =
      static_cast<double>(s.decode_weight_bytes) + static_cast<double>(s.kv_bytes_per_token) * (o.depth + (o.n_gen - 1) / 2.0);
  const double decode_gbs = bytes_per_token * tg.median() / 1e9;
  const double prefill_gflops = 2.0 * static_cast<double>(s.matmul_params) * pp.median() / 1e9;
  const auto ceil = load_ceilings(o.machine_file.empty() ? default_machine_file() : o.machine_file,
                                  s.backend == "cuda" ? s.backend : std::to_string(s.n_threads));
  const size_t rss = peak_rss_bytes();

  if (text) {
    std::printf("model        %s (%s, %.1f MiB of weights)\n", s.path.c_str(), s.name.c_str(), s.weight_bytes / 1048576.0);
    std::printf("threads      %d (%s)\n", s.n_threads, s.backend.c_str());
    // llama-bench's labels: pp512, tg128, and "@ d512" after a prefilled context.
    const auto label = [&](const char* kind, int n) {
      std::string l = kind + std::to_string(n);
      if (o.depth > 0) l += " @ d" + std::to_string(o.depth);
      return l;
    };
    if (o.n_prompt > 0)
      std::printf("%-12s %8.2f tok/s  (median of %d; min %.2f, max %.2f)\n", label("pp", o.n_prompt).c_str(), pp.median(),
                  o.reps, pp.min(), pp.max());
    if (o.n_gen > 0)
      std::printf("%-12s %8.2f tok/s  (median of %d; min %.2f, max %.2f)\n", label("tg", o.n_gen).c_str(), tg.median(),
                  o.reps, tg.min(), tg.max());
    if (!par.runs.empty())
      std::printf("tg%d x %-3d   %8.2f tok/s  (%d sequences decoding together, aggregate; median of %d; min %.2f, max %.2f)\n",
                  o.n_gen, o.parallel, par.median(), o.parallel, o.reps, par.min(), par.max());
    std::printf("peak RSS     %.1f MiB\n", rss / 1048576.0);
    if (o.n_gen > 0) {
      std::printf("decode       %.1f MB read per token, %.1f GB/s", bytes_per_token / 1e6, decode_gbs);
      if (ceil) std::printf(" = %.0f%% of the measured %.1f GB/s", 100 * decode_gbs / ceil->read_gbs, ceil->read_gbs);
      std::printf("\n");
    }
    if (o.n_prompt > 0) {
      std::printf("prefill      %.1f GFLOP/s in matmuls", prefill_gflops);
      if (ceil && ceil->int8_gops > 0)
        std::printf(" = %.0f%% of the int8 dot-product peak %.0f GOP/s (%.0f%% of f32 FMA peak %.0f)",
                    100 * prefill_gflops / ceil->int8_gops, ceil->int8_gops, 100 * prefill_gflops / ceil->fma_gflops,
                    ceil->fma_gflops);
      else if (ceil && ceil->fma_gflops > 0)
        std::printf(" = %.1f%% of the measured matrix peak %.0f GFLOP/s", 100 * prefill_gflops / ceil->fma_gflops,
                    ceil->fma_gflops);
      std::printf("\n");
    }
    if (!ceil) std::printf("(run bench/machine to measure this machine's ceilings for the roofline)\n");
    return;
  }
  nlohmann::json j = {{"model", s.path},
                      {"name", s.name},
                      {"threads", s.n_threads},
                      {"n_prompt", o.n_prompt},
                      {"n_gen", o.n_gen},
                      {"n_depth", o.depth},
                      {"reps", o.reps},
                      {"weight_bytes", s.weight_bytes},
                      {"peak_rss_bytes", rss},
                      {"decode_bytes_per_token", bytes_per_token},
                      {"decode_gbs", decode_gbs},
                      {"prefill_gflops", prefill_gflops}};
  if (o.n_prompt > 0) j["prefill_tok_s"] = pp.json();
  if (o.n_gen > 0) j["decode_tok_s"] = tg.json();
  if (!par.runs.empty()) {
    j["parallel"] = o.parallel;
    j["parallel_decode_tok_s"] = par.json();
  }
  if (ceil) {
    j["machine"] = {{"read_gbs", ceil->read_gbs}, {"fma_gflops", ceil->fma_gflops}, {"int8_gops", ceil->int8_gops}};
    j["decode_bandwidth_fraction"] = decode_gbs / ceil->read_gbs;
    if (ceil->int8_gops > 0) j["prefill_int8_peak_fraction"] = prefill_gflops / ceil->int8_gops;
  }
  std::puts(j.dump().c_str());
}

}  // namespace

void register_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* c = app.add_subcommand("bench", "measure prompt and decode throughput (as llama-bench does) and memory");
  add_model_options(*c, o->model);
  c->add_option("-p,--n-prompt", o->n_prompt, "prompt tokens processed in one batch (0: skip)")->check(CLI::Range(0, 65536));
  c->add_option("-n,--n-gen", o->n_gen, "tokens decoded one at a time (0: skip)")->check(CLI::Range(0, 65536));
  c->add_option("-d,--n-depth", o->depth, "context tokens before the timed prompt and decode, prefilled untimed")
      ->check(CLI::Range(0, 1048576));
  c->add_option("-r,--repetitions", o->reps, "repetitions; medians are reported")->check(CLI::Range(1, 1000));
  c->add_option("-o,--output", o->output, "text or json")->check(CLI::IsMember({"text", "json"}));
  c->add_option("--parallel", o->parallel,
                 "also decode this many sequences together (16-token prompts, -n tokens each) and report the "
                 "aggregate tokens/s")
      ->check(CLI::Range(0, 4096));
  c->add_option("--machine", o->machine_file, "ceilings from bench/machine (default ~/.cache/tern/bench/machine.json)");
  c->callback([o] { run(*o); });
}

}  // namespace tern::cli
