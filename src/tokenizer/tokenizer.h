// Text <-> token ids for the models' own vocabularies (byte-level BPE and SentencePiece-style BPE),
// built from plain Vocab data (tests, JSON) or from a GGUF file's tokenizer.ggml.* metadata.
//
//   Tokenizer tok = Tokenizer::from_gguf(file);
//   std::vector<int32_t> ids = tok.encode("Hello", {.add_special = true});
//   std::string text = tok.decode(ids);
//
// A Tokenizer is immutable after construction, cheap to copy (shared state) and safe to use from many
// threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace tern {

namespace gguf { class File; }

namespace detail {
// One tokenizer algorithm over a fragment of plain text (no special tokens in it). bpe.cpp and
// spm.cpp each implement one; Tokenizer does special-token splitting and BOS/EOS around them.
class TokenizerImpl {
 public:
  virtual ~TokenizerImpl() = default;
  // `starts_fragment`: the text begins the input or follows a special token (SPM adds "▁" there).
  virtual void encode(std::string_view text, bool starts_fragment, std::vector<int32_t>& out) const = 0;
  // The bytes a non-special token stands for.
  virtual std::string piece(int32_t id) const = 0;
};
std::unique_ptr<TokenizerImpl> make_bpe(std::shared_ptr<const Vocab> vocab);
std::unique_ptr<TokenizerImpl> make_spm(std::shared_ptr<const Vocab> vocab);
}  // namespace detail

struct EncodeOptions {
  bool add_special = true;     // add BOS/EOS as the vocabulary's add_bos/add_eos flags say
  bool parse_special = false;  // text equal to a control/user-defined token becomes that token
};

class Tokenizer {
 public:
  static Tokenizer from_vocab(Vocab vocab);       // validates; throws tern::Error
  static Tokenizer from_gguf(const gguf::File& file);  // tokenizer_gguf.cpp

  std::vector<int32_t> encode(std::string_view text, EncodeOptions opt = {}) const;
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const {
    return encode(text, EncodeOptions{.add_special = add_special, .parse_special = parse_special});
  }

  // Concatenated bytes of the tokens. Control tokens (and unknown/unused ones) are rendered as their
  // text only if `render_special`, else dropped. SPM's leading "▁" added by encode is removed.
  // Throws on an out-of-range id. The result may be invalid UTF-8 if the ids are (use Detokenizer to
  // stream text).
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;
  // Bytes of one token, as decode renders it mid-stream (no leading-space removal).
  std::string token_to_piece(int32_t id, bool render_special = false) const;

  const Vocab& vocab() const { return *vocab_; }
  size_t n_vocab() const { return vocab_->size(); }
  int32_t bos() const { return vocab_->bos; }
  int32_t eos() const { return vocab_->eos; }
  bool is_special(int32_t id) const;  // control or user-defined
  bool is_eog(int32_t id) const;      // end of generation: eos (or any control token named like one)
  // SPM models drop one leading space from the first decoded piece (it was added by encode).
  bool strips_leading_space() const;

 private:
  Tokenizer() = default;
  void check_id(int32_t id) const;
  void split_special(std::string_view text, bool parse_special, std::vector<int32_t>& out) const;

  std::shared_ptr<const Vocab> vocab_;
  std::shared_ptr<const detail::TokenizerImpl> impl_;
  // Specials that parse_special recognises, bucketed by first byte, longest first (leftmost-longest).
  std::shared_ptr<const std::vector<std::vector<int32_t>>> specials_by_byte_;
  std::shared_ptr<const std::vector<int32_t>> eog_ids_;
};

}  // namespace tern
