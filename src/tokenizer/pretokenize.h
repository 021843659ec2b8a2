// Pre-tokenisation for byte-level BPE: text is cut into pieces by a sequence of regexes before merges
// run, so merges never cross a word/number/space boundary. Each regex keeps both its matches and the
// text between them as separate pieces (HF's Split "Isolated"), applied to every piece of the previous
// step, exactly like HF tokenizers' Sequence pre-tokenizer and llama.cpp's regex_exprs.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tern {

class PreTokenizer {
 public:
  // `name` is GGUF's tokenizer.ggml.pre ("gpt2", "smollm", "llama-bpe", "qwen2", ...). Throws on an
  // unknown name rather than guessing: a wrong split silently changes every token id.
  explicit PreTokenizer(std::string_view name);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Pieces are views into `text`, in order, covering it exactly. Invalid UTF-8 is tolerated.
  std::vector<std::string_view> split(std::string_view text) const;

  // Llama 3's tokenizer.json sets BPE ignore_merges: a piece that is itself a token is taken whole.
  bool ignore_merges() const { return ignore_merges_; }

 private:
  struct Regex;
  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;
};

}  // namespace tern
