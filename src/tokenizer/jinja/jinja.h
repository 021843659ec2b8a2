// Public entry point of the sandboxed Jinja subset used for chat templates. The template sees only
// the JSON context and a few builtins (range, namespace, dict, raise_exception): no files, no
// environment, no imports, no attributes beyond dict keys and known string/dict methods.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace tern::jinja {

// Every limit fails with tern::Error and a message that names it, e.g.
// "template loop iterations exceed 1000000".
struct Limits {
  int max_recursion_depth = 256;            // nested blocks/expressions when parsing, macro calls when running
  size_t max_loop_iterations = 1'000'000;   // total over the whole render, all loops together
  size_t max_output_bytes = 16u << 20;      // rendered text, and any string a template builds
  size_t max_template_bytes = 1u << 20;     // template source
};

struct Options {
  bool trim_blocks = false;    // jinja2 defaults; transformers renders chat templates with both on
  bool lstrip_blocks = false;
  bool hf_tojson = false;      // transformers' tojson: no key sorting, no ASCII/HTML escaping
};

// Renders `tmpl` with the keys of `context` (a JSON object) as variables. Throws tern::Error on
// syntax errors (with line and column), runtime errors, raise_exception() and exceeded limits.
std::string render(std::string_view tmpl, const nlohmann::json& context, const Limits& limits = {},
                   const Options& options = {});
// Same, keeping the context's key order (nlohmann::json sorts keys; Python dicts iterate in
// insertion order, which `for k, v in d.items()` and transformers' tojson expose).
std::string render(std::string_view tmpl, const nlohmann::ordered_json& context, const Limits& limits = {},
                   const Options& options = {});

}  // namespace tern::jinja
