// Drives tern::Tokenizer for tests/python/test_tokenizer_parity.py.
//
//   tool_tokenizer (--gguf FILE | --vocab-json FILE) MODE [flags] < in.jsonl > out.jsonl
//   MODE: encode   each line a JSON string      -> a JSON array of ids
//         decode   each line a JSON array of ids -> a JSON string (bytes decoded, bad UTF-8 replaced)
//         stream   like decode but through Detokenizer, one feed() per id; also checks that every
//                  chunk it returns is valid UTF-8 (exit 1 if not)
//         dump-vocab  writes the Vocab as JSON (to compare the GGUF adapter with the Python reader)
//   flags: --no-add-special  --parse-special  --render-special
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/error.h"
#include "formats/gguf/gguf.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/tokenizer.h"

namespace {

bool valid_utf8(const std::string& s) {
  std::string copy = s;
  std::string good = tern::take_complete_utf8(copy);
  return copy.empty() && good == s;
}

int run(int argc, char** argv) {
  std::string gguf_path, json_path, mode;
  tern::EncodeOptions opt{.add_special = true, .parse_special = false};
  bool render_special = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--gguf" && i + 1 < argc) gguf_path = argv[++i];
    else if (a == "--vocab-json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--no-add-special") opt.add_special = false;
    else if (a == "--parse-special") opt.parse_special = true;
    else if (a == "--render-special") render_special = true;
    else if (mode.empty() && a[0] != '-') mode = a;
    else tern::fail("unknown argument '{}'", a);
  }
  TERN_CHECK(gguf_path.empty() != json_path.empty(), "give exactly one of --gguf FILE or --vocab-json FILE");
  tern::Tokenizer tok = [&] {
    if (!gguf_path.empty()) return tern::Tokenizer::from_gguf(tern::gguf::File::open(gguf_path));
    std::ifstream in(json_path, std::ios::binary);
    TERN_CHECK(in.good(), "cannot open {}", json_path);
    std::stringstream ss;
    ss << in.rdbuf();
    return tern::Tokenizer::from_vocab(tern::Vocab::from_json(ss.str()));
  }();

  if (mode == "dump-vocab") {
    std::cout << tok.vocab().to_json() << "\n";
    return 0;
  }
  TERN_CHECK(mode == "encode" || mode == "decode" || mode == "stream", "unknown mode '{}'", mode);
  const auto replace = nlohmann::json::error_handler_t::replace;
  std::string line;
  int status = 0;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line);
    if (mode == "encode") {
      std::cout << nlohmann::json(tok.encode(j.get<std::string>(), opt)).dump() << "\n";
      continue;
    }
    auto ids = j.get<std::vector<int32_t>>();
    std::string text;
    if (mode == "decode") {
      text = tok.decode(ids, render_special);
    } else {
      tern::Detokenizer d(tok, render_special);
      for (int32_t id : ids) {
        std::string chunk = d.feed(id);
        if (!valid_utf8(chunk)) status = 1;
        text += chunk;
      }
      std::string tail = d.flush();
      if (!valid_utf8(tail)) status = 1;
      text += tail;
    }
    std::cout << nlohmann::json(text).dump(-1, ' ', false, replace) << "\n";
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tool_tokenizer: %s\n", e.what());
    return 2;
  }
}
