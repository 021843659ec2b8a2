// tern chat: an interactive conversation using the model's chat template.
#include <cstdio>
#include <iostream>
#include <unistd.h>

#include "common.h"
#include "core/error.h"

namespace tern::cli {
namespace {

struct ChatOptions {
  ModelOptions model;
  SamplingOptions sampling;
  std::string system;
  int n_predict = 512;
};

void chat(ChatOptions& o) {
  auto engine = Engine::load(o.model.engine_config());
  TERN_CHECK(engine->has_chat_template(), "{}: the model has no chat template; use tern run", engine->summary().path);
  std::vector<ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  const bool tty = isatty(fileno(stdin));
  if (tty) std::fprintf(stderr, "tern chat with %s. Ctrl-D to quit.\n", engine->summary().path.c_str());
  std::string line;
  SamplingParams sp = o.sampling.resolved();
  for (;;) {
    if (tty) std::fputs("> ", stdout), std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    messages.push_back({"user", line});
    GenerateRequest req;
    req.prompt = engine->tokenize(engine->apply_chat_template(messages, true), false, true);
    req.sampling = sp;
    req.max_tokens = o.n_predict;
    sp.seed += 1;  // a new draw each turn, still reproducible from the first seed
    auto result = engine->generate(req, [](const StreamChunk& c) {
      std::fwrite(c.text.data(), 1, c.text.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::puts("");
    messages.push_back({"assistant", result.text});
  }
}

}  // namespace

void register_chat(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  CLI::App* cmd = app.add_subcommand("chat", "interactive chat using the model's chat template");
  add_model_options(*cmd, o->model);
  add_speculative_options(*cmd, o->model);
  add_sampling_options(*cmd, o->sampling);
  cmd->add_option("--system", o->system, "system message");
  cmd->add_option("-n,--n-predict", o->n_predict, "most tokens per answer")->check(CLI::Range(1, 1 << 20));
  cmd->callback([o] { chat(*o); });
}

}  // namespace tern::cli
