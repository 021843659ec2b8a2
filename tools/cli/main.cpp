// tern: command-line front end. A thin client of the public API (include/tern/).
#include <cstdio>

#include "common.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"tern: LLM inference on CPUs and NVIDIA GPUs", "tern"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tern 0.1.0");
  tern::cli::register_run(app);
  tern::cli::register_chat(app);
  tern::cli::register_info(app);
  tern::cli::register_bench(app);
  tern::cli::register_quantize(app);
  tern::cli::register_serve(app);
  tern::cli::register_perplexity(app);
  tern::cli::register_imatrix(app);
  tern::cli::rewrite_llama_options(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tern: error: %s (see tern --help)\n", e.what());
    return 2;
  } catch (const tern::Error& e) {
    std::fprintf(stderr, "tern: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tern: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
