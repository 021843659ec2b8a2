// The plain data a tokenizer is built from: what GGUF's tokenizer.ggml.* keys hold. Kept free of any
// file format so tests can build small vocabularies by hand and tools can load one from JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tern {

// tokenizer.ggml.model: "gpt2" is byte-level BPE with ranked merges, "llama" is SentencePiece-style
// BPE driven by per-token scores with <0xXX> byte fallback.
enum class TokenizerModel { BytePairBPE, SentencePiece };

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

struct Vocab {
  TokenizerModel model = TokenizerModel::BytePairBPE;
  std::string pre = "gpt2";            // tokenizer.ggml.pre: selects the pre-tokenizer regexes (BPE only)
  std::vector<std::string> tokens;     // id -> text (byte-level BPE: GPT-2 byte-to-unicode form)
  std::vector<float> scores;           // id -> score; empty, or one per token (SPM needs them)
  std::vector<int32_t> types;          // id -> TokenType; empty means all Normal
  std::vector<std::string> merges;     // "left right", rank = position (BPE only)
  int32_t bos = -1, eos = -1, unk = -1, pad = -1;  // -1: none
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;       // SPM: prepend "▁" to text that starts a fragment

  size_t size() const { return tokens.size(); }
  TokenType type(int32_t id) const;    // id must be in range
  // Checks sizes, special ids and token types; throws tern::Error naming the fault.
  void validate() const;

  // JSON form written by tests/python (keys as the struct fields, "model" is "gpt2" or "llama").
  static Vocab from_json(std::string_view json_text);
  std::string to_json() const;
};

TokenizerModel tokenizer_model_from_name(std::string_view name);  // "gpt2" | "llama"

}  // namespace tern
