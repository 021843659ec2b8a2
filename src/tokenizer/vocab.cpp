// Validation and JSON (de)serialisation of the tokenizer's plain vocabulary data.
#include "tokenizer/vocab.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace tern {

TokenizerModel tokenizer_model_from_name(std::string_view name) {
  if (name == "gpt2") return TokenizerModel::BytePairBPE;
  if (name == "llama") return TokenizerModel::SentencePiece;
  fail("unsupported tokenizer model '{}' (supported: gpt2, llama)", name);
}

TokenType Vocab::type(int32_t id) const {
  TERN_CHECK(id >= 0 && static_cast<size_t>(id) < tokens.size(), "token id {} out of range [0, {})", id,
             tokens.size());
  return types.empty() ? TokenType::Normal : static_cast<TokenType>(types[id]);
}

void Vocab::validate() const {
  TERN_CHECK(!tokens.empty(), "tokenizer vocabulary is empty");
  TERN_CHECK(tokens.size() < (size_t(1) << 31), "tokenizer vocabulary too large ({})", tokens.size());
  TERN_CHECK(scores.empty() || scores.size() == tokens.size(), "tokenizer has {} scores for {} tokens",
             scores.size(), tokens.size());
  TERN_CHECK(types.empty() || types.size() == tokens.size(), "tokenizer has {} token types for {} tokens",
             types.size(), tokens.size());
  for (size_t i = 0; i < types.size(); ++i)
    TERN_CHECK(types[i] >= 0 && types[i] <= 6, "token {} has invalid token type {}", i, types[i]);
  auto check_id = [&](int32_t id, const char* what) {
    TERN_CHECK(id >= -1 && id < static_cast<int64_t>(tokens.size()), "{} token id {} out of range [0, {})",
               what, id, tokens.size());
  };
  check_id(bos, "bos");
  check_id(eos, "eos");
  check_id(unk, "unknown");
  check_id(pad, "padding");
  TERN_CHECK(!add_bos || bos >= 0, "add_bos is set but the vocabulary has no bos token");
  TERN_CHECK(!add_eos || eos >= 0, "add_eos is set but the vocabulary has no eos token");
}

static const char* model_name(TokenizerModel m) {
  return m == TokenizerModel::SentencePiece ? "llama" : "gpt2";
}

Vocab Vocab::from_json(std::string_view json_text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    fail("vocab json: {}", e.what());
  }
  Vocab v;
  try {
    v.model = tokenizer_model_from_name(j.at("model").get<std::string>());
    v.pre = j.value("pre", std::string("gpt2"));
    v.tokens = j.at("tokens").get<std::vector<std::string>>();
    v.scores = j.value("scores", std::vector<float>{});
    v.types = j.value("token_types", std::vector<int32_t>{});
    v.merges = j.value("merges", std::vector<std::string>{});
    v.bos = j.value("bos", -1);
    v.eos = j.value("eos", -1);
    v.unk = j.value("unk", -1);
    v.pad = j.value("pad", -1);
    v.add_bos = j.value("add_bos", false);
    v.add_eos = j.value("add_eos", false);
    v.add_space_prefix = j.value("add_space_prefix", false);
  } catch (const nlohmann::json::exception& e) {
    fail("vocab json: {}", e.what());
  }
  v.validate();
  return v;
}

std::string Vocab::to_json() const {
  nlohmann::json j;
  j["model"] = model_name(model);
  j["pre"] = pre;
  j["tokens"] = tokens;
  j["scores"] = scores;
  j["token_types"] = types;
  j["merges"] = merges;
  j["bos"] = bos;
  j["eos"] = eos;
  j["unk"] = unk;
  j["pad"] = pad;
  j["add_bos"] = add_bos;
  j["add_eos"] = add_eos;
  j["add_space_prefix"] = add_space_prefix;
  // Tokens of a byte-level vocab are valid UTF-8 but a hand-made one may not be: replace, don't throw.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace tern
