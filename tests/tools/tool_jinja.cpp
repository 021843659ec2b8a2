// Renders a template file with a JSON context file and prints the result, for the jinja2 parity
// test. Usage: tool_jinja TEMPLATE CONTEXT.json [--trim-blocks] [--lstrip-blocks] [--hf-tojson]
// Exit 1 with the error message on stderr when rendering fails.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "core/error.h"
#include "tokenizer/jinja/jinja.h"

static std::string read_file(const char* path) {
  std::ifstream f(path, std::ios::binary);
  TERN_CHECK(f.good(), "cannot open {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: tool_jinja TEMPLATE CONTEXT.json [--trim-blocks] [--lstrip-blocks] [--hf-tojson]\n";
    return 2;
  }
  try {
    tern::jinja::Options options;
    for (int i = 3; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--trim-blocks") options.trim_blocks = true;
      else if (a == "--lstrip-blocks") options.lstrip_blocks = true;
      else if (a == "--hf-tojson") options.hf_tojson = true;
      else tern::fail("unknown option {}", a);
    }
    std::string tmpl = read_file(argv[1]);
    nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(read_file(argv[2]));
    std::cout << tern::jinja::render(tmpl, ctx, {}, options);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
