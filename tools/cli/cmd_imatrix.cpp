// tern imatrix: run a model over calibration text and write each weight's importance (the summed
// squares of its inputs) in llama.cpp's GGUF imatrix layout, for `tern quantize --imatrix`.
#include <fmt/format.h>

#include "calibration.h"
#include "common.h"
#include "core/error.h"

namespace tern::cli {
namespace {

struct ImatrixOptions {
  ModelOptions model;
  std::string text_file, out = "imatrix.gguf";
  int64_t tokens = 16384;
  int ctx = 512;
  bool quiet = false;
};

void imatrix(const ImatrixOptions& o) {
  const std::string model = o.model.model.empty() ? default_model_path() : o.model.model;
  const Calibration cal = calibrate(
      {.model_path = model, .text_file = o.text_file, .tokens = o.tokens, .ctx = o.ctx, .threads = o.model.threads, .quiet = o.quiet});
  write_imatrix(o.out, cal, o.text_file);
  fmt::print(stderr, "tern imatrix: {} weights, {} tokens in {} windows -> {}\n", cal.inputs.size(), cal.tokens,
             cal.windows, o.out);
}

}  // namespace

void register_imatrix(CLI::App& app) {
  auto o = std::make_shared<ImatrixOptions>();
  CLI::App* cmd = app.add_subcommand("imatrix", "collect an importance matrix from calibration text");
  cmd->add_option("-m,--model", o->model.model, "GGUF model file (default: the fetched SmolLM2-135M-Instruct)");
  cmd->add_option("-t,--threads", o->model.threads, "threads (default: all hardware threads)")->check(CLI::Range(0, 1024));
  cmd->add_option("-f,--file", o->text_file, "calibration text (UTF-8)")->required();
  cmd->add_option("-o,--output", o->out, "file to write (default imatrix.gguf)");
  cmd->add_option("--calib-tokens", o->tokens, "tokens of the text to use (default 16384)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--ctx", o->ctx, "tokens per window (default 512)")->check(CLI::Range(8, 1 << 16));
  cmd->add_flag("-q,--quiet", o->quiet, "no progress");
  cmd->callback([o] { imatrix(*o); });
}

}  // namespace tern::cli
