// Maps `general.architecture` to the implementation that runs it.
#include <string>

#include "core/error.h"
#include "models/llama_model.h"

namespace tern {

std::unique_ptr<Model> load_model(const gguf::File& file, Backend& backend, const ModelConfig& config) {
  const std::string arch(file.get_string("general.architecture"));
  if (arch == "llama") return std::make_unique<LlamaModel>(file, backend, config);
  fail("{}: unsupported architecture '{}' (supported: llama)", file.path(), arch);
}

}  // namespace tern
