// tern run: one prompt in, the generated answer streamed out.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common.h"
#include "core/error.h"

namespace tern::cli {
namespace {

struct RunOptions {
  ModelOptions model;
  SamplingOptions sampling;
  std::string prompt;
  std::string prompt_file;
  std::string system;
  int n_predict = 128;
  bool chat = false;
  bool ignore_eos = false;
  std::vector<std::string> stop;
  std::string output_format = "text";
};

// The prompt as token ids: raw text, or the model's chat template around it.
std::vector<int32_t> build_prompt(Engine& engine, const RunOptions& o, const std::string& text) {
  if (!o.chat) return engine.tokenize(text, /*add_special=*/true, /*parse_special=*/true);
  std::vector<ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  messages.push_back({"user", text});
  return engine.tokenize(engine.apply_chat_template(messages, true), /*add_special=*/false, /*parse_special=*/true);
}

void run(RunOptions& o) {
  std::string text = o.prompt;
  if (!o.prompt_file.empty()) text = read_text_file(o.prompt_file, "prompt");
  TERN_CHECK(!text.empty(), "no prompt: give -p TEXT or -f FILE");
  auto engine = Engine::load(o.model.engine_config());
  GenerateRequest req;
  req.prompt = build_prompt(*engine, o, text);
  req.sampling = o.sampling.resolved();
  req.max_tokens = o.n_predict;
  req.ignore_eos = o.ignore_eos;
  req.stop = o.stop;
  const bool json = o.output_format == "json";
  auto result = engine->generate(req, [&](const StreamChunk& c) {
    if (!json && !c.text.empty()) {
      std::fwrite(c.text.data(), 1, c.text.size(), stdout);
      std::fflush(stdout);
    }
    return true;
  });
  const double pp = result.prompt_seconds > 0 ? req.prompt.size() / result.prompt_seconds : 0;
  const double tg = result.generate_seconds > 0 ? result.tokens.size() / result.generate_seconds : 0;
  const EngineMetrics m = engine->metrics();
  const double acceptance = m.spec_draft_tokens > 0 ? double(m.spec_accepted_tokens) / m.spec_draft_tokens : 0;
  const double per_pass = m.spec_verify_passes > 0 ? double(m.spec_emitted_tokens) / m.spec_verify_passes : 0;
  if (json) {
    nlohmann::json j = {{"model", engine->summary().path},
                        {"prompt_ids", req.prompt},
                        {"generated_ids", result.tokens},
                        {"text", result.text},
                        {"finish_reason", finish_reason_name(result.finish)},
                        {"seed", req.sampling.seed},
                        {"prompt_tokens_per_second", pp},
                        {"generated_tokens_per_second", tg}};
    if (!o.model.spec.empty())
      j["speculative"] = {{"method", o.model.spec},
                          {"verify_passes", m.spec_verify_passes},
                          {"draft_tokens", m.spec_draft_tokens},
                          {"accepted_tokens", m.spec_accepted_tokens},
                          {"acceptance_rate", acceptance},
                          {"tokens_per_pass", per_pass},
                          {"token_cost", engine->summary().spec_token_cost}};
    std::puts(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::puts("");
    std::fprintf(stderr, "tern: prompt %zu tokens (%.1f tok/s), generated %zu tokens (%.1f tok/s), stop: %s\n",
                 req.prompt.size(), pp, result.tokens.size(), tg, finish_reason_name(result.finish).data());
    if (!o.model.spec.empty())
      std::fprintf(stderr, "tern: speculative (%s): %lld drafted, %.0f%% accepted, %.2f tokens per verifying pass, "
                   "a drafted token costs %.2f decode steps\n",
                   o.model.spec.c_str(), static_cast<long long>(m.spec_draft_tokens), 100 * acceptance, per_pass,
                   engine->summary().spec_token_cost);
  }
}

}  // namespace

void register_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "generate text from a prompt");
  add_model_options(*cmd, o->model);
  add_speculative_options(*cmd, o->model);
  add_sampling_options(*cmd, o->sampling);
  cmd->add_option("-p,--prompt", o->prompt, "prompt text");
  cmd->add_option("-f,--file", o->prompt_file, "read the prompt from a file");
  cmd->add_option("-n,--n-predict", o->n_predict, "tokens to generate")->check(CLI::Range(0, 1 << 20));
  cmd->add_flag("--chat", o->chat, "wrap the prompt in the model's chat template as a user message");
  cmd->add_option("--system", o->system, "system message (with --chat)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "keep generating past end-of-sequence tokens");
  cmd->add_option("--stop", o->stop, "stop before this string (repeatable)");
  cmd->add_option("--output-format", o->output_format, "text (streamed) or json (one object on the last line)")
      ->check(CLI::IsMember({"text", "json"}));
  cmd->callback([o] { run(*o); });
}

}  // namespace tern::cli
