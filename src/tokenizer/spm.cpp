// SentencePiece-style BPE (tokenizer.ggml.model = "llama": Llama 1/2, Mistral, TinyLlama...). Spaces
// become "▁" (and one is prepended to each fragment when add_space_prefix), the text is split into
// UTF-8 characters, and adjacent pairs whose concatenation is a token are merged highest score first,
// leftmost first on ties (llama.cpp's llm_tokenizer_spm, SentencePiece's BPE). A character with no
// token of its own is emitted as its UTF-8 bytes through the <0xXX> byte tokens.
#include <queue>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace tern::detail {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 "▁"

size_t utf8_len(uint8_t c) {
  return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

class SpmTokenizer final : public TokenizerImpl {
 public:
  explicit SpmTokenizer(std::shared_ptr<const Vocab> vp) : v_(std::move(vp)) {
    const Vocab& v = *v_;
    TERN_CHECK(v.scores.size() == v.size(), "SentencePiece tokenizer needs one score per token ({} for {})",
               v.scores.size(), v.size());
    token_id_.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) token_id_.emplace(v.tokens[i], static_cast<int32_t>(i));
    for (int b = 0; b < 256; ++b) byte_id_[b] = lookup(fmt::format("<0x{:02X}>", b));
    for (int b = 0; b < 256; ++b)
      if (byte_id_[b] >= 0) byte_of_id_.emplace(byte_id_[b], static_cast<uint8_t>(b));
  }

  void encode(std::string_view text, bool starts_fragment, std::vector<int32_t>& out) const override {
    std::string s;
    s.reserve(text.size() + 8);
    if (v_->add_space_prefix && starts_fragment) s += kSpace;
    for (char c : text) {
      if (c == ' ') s += kSpace;
      else s += c;
    }
    if (s.empty()) return;

    struct Symbol {
      size_t begin, len;
      int32_t prev, next;
    };
    std::vector<Symbol> sym;
    for (size_t i = 0; i < s.size();) {
      size_t n = std::min(utf8_len(static_cast<uint8_t>(s[i])), s.size() - i);
      sym.push_back({i, n, static_cast<int32_t>(sym.size()) - 1, static_cast<int32_t>(sym.size()) + 1});
      i += n;
    }
    sym.back().next = -1;

    struct Bigram {
      float score;
      int32_t left;
      size_t len;  // of the merged text when queued: a mismatch later means the entry is stale
      bool operator<(const Bigram& o) const {  // max-heap: highest score, then leftmost
        return score != o.score ? score < o.score : left > o.left;
      }
    };
    std::priority_queue<Bigram> heap;
    auto consider = [&](int32_t l) {
      if (l < 0 || sym[l].next < 0) return;
      const Symbol& a = sym[l];
      const Symbol& b = sym[a.next];
      int32_t id = lookup(std::string_view(s).substr(a.begin, a.len + b.len));
      if (id >= 0) heap.push({v_->scores[id], l, a.len + b.len});
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) consider(i);
    while (!heap.empty()) {
      Bigram g = heap.top();
      heap.pop();
      Symbol& a = sym[g.left];
      if (a.len == 0 || a.next < 0 || a.len + sym[a.next].len != g.len) continue;  // stale
      Symbol& b = sym[a.next];
      a.len += b.len;
      b.len = 0;
      a.next = b.next;
      if (a.next >= 0) sym[a.next].prev = g.left;
      consider(a.prev);
      consider(g.left);
    }

    for (int32_t i = 0; i >= 0; i = sym[i].next) {
      std::string_view t = std::string_view(s).substr(sym[i].begin, sym[i].len);
      if (int32_t id = lookup(t); id >= 0) {
        out.push_back(id);
        continue;
      }
      for (char c : t) {  // byte fallback; unk only if the vocabulary lacks byte tokens
        int32_t id = byte_id_[static_cast<uint8_t>(c)];
        if (id < 0) id = v_->unk;
        TERN_CHECK(id >= 0, "cannot encode byte 0x{:02X}: no byte token and no unknown token",
                   static_cast<uint8_t>(c));
        out.push_back(id);
        if (id == v_->unk) break;  // one unk per character, as SentencePiece does
      }
    }
  }

  std::string piece(int32_t id) const override {
    if (auto it = byte_of_id_.find(id); it != byte_of_id_.end())
      return std::string(1, static_cast<char>(it->second));
    const std::string& t = v_->tokens[id];
    std::string out;
    for (size_t i = 0; i < t.size();) {
      if (t.compare(i, kSpace.size(), kSpace) == 0) {
        out += ' ';
        i += kSpace.size();
      } else {
        out += t[i++];
      }
    }
    return out;
  }

 private:
  int32_t lookup(std::string_view s) const {
    auto it = token_id_.find(std::string(s));
    return it == token_id_.end() ? -1 : it->second;
  }

  std::shared_ptr<const Vocab> v_;
  std::unordered_map<std::string, int32_t> token_id_;
  int32_t byte_id_[256];
  std::unordered_map<int32_t, uint8_t> byte_of_id_;
};

}  // namespace

std::unique_ptr<TokenizerImpl> make_spm(std::shared_ptr<const Vocab> vocab) {
  return std::make_unique<SpmTokenizer>(std::move(vocab));
}

}  // namespace tern::detail
