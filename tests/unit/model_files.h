// Where the unit tests find the real models fetched by scripts/fetch-models ($TERN_MODELS, default
// ~/.cache/tern/models).
#pragma once

#include <cstdlib>
#include <string>

namespace tern::test_files {

inline std::string default_model_path() {
  const char* dir = std::getenv("TERN_MODELS");
  const std::string d = dir && *dir ? dir : std::string(std::getenv("HOME") ? std::getenv("HOME") : "/root") + "/.cache/tern/models";
  return d + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace tern::test_files
