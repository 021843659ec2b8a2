// Adapter from a GGUF file's tokenizer.ggml.* metadata to the plain Vocab the tokenizer is built from.
// Only this file knows the key names, so the tokenizer itself stays testable without GGUF files.
#include "core/error.h"
#include "formats/gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace tern {

Tokenizer Tokenizer::from_gguf(const gguf::File& f) {
  Vocab v;
  std::string model(f.get_string("tokenizer.ggml.model"));
  v.model = tokenizer_model_from_name(model);
  const bool spm = v.model == TokenizerModel::SentencePiece;
  v.pre = std::string(f.find_string("tokenizer.ggml.pre").value_or("default"));
  for (std::string_view t : f.get_string_array("tokenizer.ggml.tokens")) v.tokens.emplace_back(t);
  if (f.has("tokenizer.ggml.scores"))
    for (double s : f.get_float_array("tokenizer.ggml.scores")) v.scores.push_back(static_cast<float>(s));
  if (f.has("tokenizer.ggml.token_type"))
    for (int64_t t : f.get_int_array("tokenizer.ggml.token_type")) {
      TERN_CHECK(t >= 0 && t <= 6, "{}: tokenizer.ggml.token_type has invalid value {}", f.path(), t);
      v.types.push_back(static_cast<int32_t>(t));
    }
  if (f.has("tokenizer.ggml.merges"))
    for (std::string_view m : f.get_string_array("tokenizer.ggml.merges")) v.merges.emplace_back(m);
  auto id = [&](const char* key) -> int32_t {
    auto x = f.find_int(key);
    if (!x) return -1;
    TERN_CHECK(*x >= 0 && static_cast<uint64_t>(*x) < v.tokens.size(), "{}: {} = {} is out of range [0, {})",
               f.path(), key, *x, v.tokens.size());
    return static_cast<int32_t>(*x);
  };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  v.unk = id("tokenizer.ggml.unknown_token_id");
  v.pad = id("tokenizer.ggml.padding_token_id");
  // Defaults follow llama.cpp: SentencePiece models add BOS and a space prefix unless told not to.
  v.add_bos = f.find_bool("tokenizer.ggml.add_bos_token").value_or(spm) && v.bos >= 0;
  v.add_eos = f.find_bool("tokenizer.ggml.add_eos_token").value_or(false) && v.eos >= 0;
  v.add_space_prefix = f.find_bool("tokenizer.ggml.add_space_prefix").value_or(spm);
  try {
    return from_vocab(std::move(v));
  } catch (const Error& e) {
    fail("{}: {}", f.path(), e.what());
  }
}

}  // namespace tern
