// Tokenizer: the part common to every algorithm: special-token splitting, BOS/EOS, id bounds checks
// and decoding. The algorithms themselves live in bpe.cpp and spm.cpp.
#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "core/error.h"

namespace tern {

Tokenizer Tokenizer::from_vocab(Vocab vocab) {
  vocab.validate();
  Tokenizer t;
  auto v = std::make_shared<const Vocab>(std::move(vocab));
  t.vocab_ = v;
  t.impl_ = v->model == TokenizerModel::SentencePiece ? detail::make_spm(v) : detail::make_bpe(v);

  auto buckets = std::make_shared<std::vector<std::vector<int32_t>>>(256);
  auto eog = std::make_shared<std::vector<int32_t>>();
  if (v->eos >= 0) eog->push_back(v->eos);
  for (size_t i = 0; i < v->size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    const std::string& s = v->tokens[i];
    TokenType ty = v->type(id);
    if ((ty == TokenType::Control || ty == TokenType::UserDefined) && !s.empty())
      (*buckets)[static_cast<uint8_t>(s[0])].push_back(id);
    // Chat models end a turn with a token other than eos; generation must stop on those too.
    if (ty == TokenType::Control && id != v->eos &&
        (s == "<|im_end|>" || s == "<|eot_id|>" || s == "<|end|>" || s == "<end_of_turn>" ||
         s == "<|endoftext|>" || s == "<|eom_id|>"))
      eog->push_back(id);
  }
  for (auto& b : *buckets)
    std::stable_sort(b.begin(), b.end(), [&](int32_t a, int32_t c) {
      return v->tokens[a].size() > v->tokens[c].size();
    });
  t.specials_by_byte_ = std::move(buckets);
  t.eog_ids_ = std::move(eog);
  return t;
}

void Tokenizer::check_id(int32_t id) const {
  TERN_CHECK(id >= 0 && static_cast<size_t>(id) < vocab_->size(), "token id {} out of range [0, {})", id,
             vocab_->size());
}

bool Tokenizer::is_special(int32_t id) const {
  check_id(id);
  TokenType t = vocab_->type(id);
  return t == TokenType::Control || t == TokenType::UserDefined;
}

bool Tokenizer::is_eog(int32_t id) const {
  check_id(id);
  return std::find(eog_ids_->begin(), eog_ids_->end(), id) != eog_ids_->end();
}

bool Tokenizer::strips_leading_space() const {
  return vocab_->model == TokenizerModel::SentencePiece && vocab_->add_space_prefix;
}

// Cuts `text` at leftmost-longest occurrences of special tokens (as HF's added-token matcher does)
// and runs the algorithm on the plain text between them.
void Tokenizer::split_special(std::string_view text, bool parse_special, std::vector<int32_t>& out) const {
  bool starts_fragment = true;
  size_t plain_begin = 0;
  auto flush_plain = [&](size_t end) {
    if (end > plain_begin) {
      impl_->encode(text.substr(plain_begin, end - plain_begin), starts_fragment, out);
      starts_fragment = false;
    }
  };
  if (parse_special) {
    for (size_t pos = 0; pos < text.size();) {
      int32_t found = -1;
      for (int32_t id : (*specials_by_byte_)[static_cast<uint8_t>(text[pos])]) {
        if (text.substr(pos).starts_with(vocab_->tokens[id])) {
          found = id;
          break;
        }
      }
      if (found < 0) {
        ++pos;
        continue;
      }
      flush_plain(pos);
      out.push_back(found);
      starts_fragment = true;
      pos += vocab_->tokens[found].size();
      plain_begin = pos;
    }
  }
  flush_plain(text.size());
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, EncodeOptions opt) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (opt.add_special && vocab_->add_bos) out.push_back(vocab_->bos);
  split_special(text, opt.parse_special, out);
  if (opt.add_special && vocab_->add_eos) out.push_back(vocab_->eos);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  check_id(id);
  switch (vocab_->type(id)) {
    case TokenType::Control:
    case TokenType::Unknown:
    case TokenType::Unused:
      return render_special ? vocab_->tokens[id] : std::string();
    case TokenType::UserDefined:
      return vocab_->tokens[id];  // user-defined tokens are literal text, always shown
    default:
      return impl_->piece(id);
  }
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  std::string out;
  bool first_text = true;
  for (int32_t id : ids) {
    std::string p = token_to_piece(id, render_special);
    if (p.empty()) continue;
    if (first_text && strips_leading_space() && !is_special(id) && p[0] == ' ') p.erase(0, 1);
    first_text = false;
    out += p;
  }
  return out;
}

}  // namespace tern
