// tern perplexity: how well a model predicts a text, over sliding windows (src/eval/perplexity.h),
// and with --kl-base how far its next-token distributions are from a base model's at every scored
// position (mean KL divergence, top-1 agreement): the quality column of the compression table.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common.h"
#include "core/error.h"
#include "eval/perplexity.h"
#include "progress.h"

namespace tern::cli {
namespace {

struct PerplexityOptions {
  ModelOptions model;
  std::string text_file;
  std::string kl_base;
  int ctx = 512;
  int stride = 0;  // 0: ctx / 2
  int chunks = 0;  // 0: all windows
  std::string output = "text";
  bool quiet = false;
};

void perplexity(PerplexityOptions& o) {
  TERN_CHECK(!o.text_file.empty(), "no text: give -f FILE (scripts/fetch-eval-text fetches one)");
  const std::string text = read_text_file(o.text_file, "text");
  const int stride = o.stride > 0 ? o.stride : std::max(1, o.ctx / 2);

  EngineConfig cfg = o.model.engine_config();
  cfg.n_ctx = std::max(cfg.n_ctx, o.ctx + 1);
  cfg.max_batch_tokens = std::min(o.model.batch, o.ctx + 1);
  cfg.prefix_caching = false;
  auto engine = Engine::load(cfg);
  std::unique_ptr<Engine> base;
  if (!o.kl_base.empty()) {
    EngineConfig bc = cfg;
    bc.model_path = o.kl_base;
    base = Engine::load(bc);
    TERN_CHECK(base->summary().n_vocab == engine->summary().n_vocab,
               "--kl-base {}: vocabulary of {} tokens, the model has {}", o.kl_base, base->summary().n_vocab,
               engine->summary().n_vocab);
  }

  // A model whose tokenizer adds a BOS gets one in front of every window, as in llama.cpp.
  const std::vector<int32_t> bos = engine->tokenize("", /*add_special=*/true);
  const std::vector<int32_t> tokens = engine->tokenize(text, /*add_special=*/false);
  if (base) {
    TERN_CHECK(base->tokenize(text, false) == tokens && base->tokenize("", true) == bos,
               "--kl-base {}: tokenizes the text differently from the model", o.kl_base);
  }
  const int64_t text_ctx = o.ctx - static_cast<int64_t>(bos.size());
  TERN_CHECK(stride <= text_ctx, "--stride {} is longer than the {} text tokens of a window", stride, text_ctx);
  std::vector<eval::Window> windows = eval::plan_windows(static_cast<int64_t>(tokens.size()), text_ctx, stride, !bos.empty());
  TERN_CHECK(!windows.empty(), "{}: {} tokens is too short to score", o.text_file, tokens.size());
  if (o.chunks > 0 && static_cast<size_t>(o.chunks) < windows.size()) windows.resize(o.chunks);
  int64_t to_score = 0, to_run = 0;
  for (const auto& w : windows) to_score += w.end - w.first_scored, to_run += w.end - w.begin + bos.size();
  if (!o.quiet)
    fmt::print(stderr,
               "tern perplexity: {} tokens of {}, {} windows of {} tokens (stride {}), {} tokens scored, {} run{}\n",
               tokens.size(), o.text_file, windows.size(), o.ctx, stride, to_score, to_run,
               base ? ", against " + o.kl_base : "");

  const int64_t V = engine->summary().n_vocab;
  eval::Scorer scorer;
  Progress progress("perplexity", static_cast<int64_t>(windows.size()), o.quiet);
  std::vector<int32_t> ids;
  for (size_t wi = 0; wi < windows.size(); ++wi) {
    const eval::Window& w = windows[wi];
    ids.assign(bos.begin(), bos.end());
    ids.insert(ids.end(), tokens.begin() + w.begin, tokens.begin() + w.end);
    // Text token i sits at window row bos + i - begin; it is predicted by the row before.
    const size_t first_row = bos.size() + (w.first_scored - w.begin) - 1;
    const std::vector<float> logits = engine->logits(ids, first_row);
    std::vector<float> base_logits;
    if (base) base_logits = base->logits(ids, first_row);
    for (int64_t i = w.first_scored; i < w.end; ++i) {
      const size_t r = static_cast<size_t>(i - w.first_scored) * V;
      scorer.add(std::span(logits).subspan(r, V), tokens[i],
                 base ? std::span<const float>(base_logits).subspan(r, V) : std::span<const float>{});
    }
    progress.update(static_cast<int64_t>(wi + 1), fmt::format("ppl {:.4f}", scorer.perplexity()));
  }
  progress.finish();
  const double seconds = progress.seconds();

  const double ppl = scorer.perplexity(), ppl_err = ppl * scorer.nll_stderr();
  if (o.output == "json") {
    nlohmann::json j = {{"model", cfg.model_path},       {"text", o.text_file},
                        {"ctx", o.ctx},                  {"stride", stride},
                        {"windows", windows.size()},     {"tokens_scored", scorer.count()},
                        {"perplexity", ppl},             {"perplexity_stderr", ppl_err},
                        {"mean_nll", scorer.mean_nll()}, {"seconds", seconds},
                        {"tokens_per_second", seconds > 0 ? static_cast<double>(to_run) / seconds : 0.0}};
    if (base) {
      j["kl_base"] = o.kl_base;
      j["base_perplexity"] = scorer.base_perplexity();
      j["kl_divergence"] = scorer.mean_kl();
      j["kl_divergence_stderr"] = scorer.kl_stderr();
      j["top1_agreement"] = scorer.top1_agreement();
    }
    fmt::print("{}\n", j.dump());
    return;
  }
  fmt::print("perplexity: {:.4f} ± {:.4f} over {} tokens ({} windows of {}, stride {}), {:.1f} s\n", ppl, ppl_err,
             scorer.count(), windows.size(), o.ctx, stride, seconds);
  if (base)
    fmt::print("against {}: base perplexity {:.4f}, mean KL divergence {:.6f} ± {:.6f}, top-1 agreement {:.2f}%\n",
               o.kl_base, scorer.base_perplexity(), scorer.mean_kl(), scorer.kl_stderr(), 100 * scorer.top1_agreement());
}

}  // namespace

void register_perplexity(CLI::App& app) {
  auto o = std::make_shared<PerplexityOptions>();
  CLI::App* cmd = app.add_subcommand("perplexity", "score a text: perplexity, and KL divergence against a base model");
  cmd->footer(
      "Windows of --ctx tokens start --stride tokens apart; each token is scored once, in the first window\n"
      "that reaches it, so outside the first window it sees at least ctx - stride tokens of context.\n"
      "--stride equal to --ctx scores disjoint chunks (cheapest). With --kl-base, both models run every\n"
      "window and the line reports KL(base || model) averaged over scored tokens and how often both put\n"
      "the same token first. scripts/fetch-eval-text fetches the evaluation text.");
  add_model_options(*cmd, o->model);
  cmd->add_option("-f,--file", o->text_file, "text to score (UTF-8)")->required();
  cmd->add_option("--ctx", o->ctx, "tokens per window, a BOS included (default 512)")->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--stride", o->stride, "tokens between window starts (default: ctx / 2)")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--chunks", o->chunks, "score only the first N windows (default: all)")->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--kl-base", o->kl_base, "base model (same vocabulary): report KL divergence and top-1 agreement");
  cmd->add_option("--output", o->output, "text or json (one object on the last line)")->check(CLI::IsMember({"text", "json"}));
  cmd->add_flag("-q,--quiet", o->quiet, "no progress");
  cmd->callback([o] { perplexity(*o); });
}

}  // namespace tern::cli
