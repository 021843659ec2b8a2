// Byte-level BPE (GPT-2 family: SmolLM2, Llama 3, Qwen 2). Text is pre-tokenised into pieces, each
// piece's bytes are mapped to printable code points (GPT-2's byte-to-unicode table, so every byte is a
// vocabulary character), then ranked merges are applied lowest rank first, leftmost first on ties:
// the same order as HF tokenizers' BPE (a heap of (rank, position)), so ids match exactly.
#include <cstring>
#include <queue>
#include <unordered_map>

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace tern::detail {

namespace {

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order. So a space is "Ġ" (U+0120) and a newline "Ċ" (U+010A).
struct ByteTable {
  std::string byte_to_utf8[256];
  std::unordered_map<uint32_t, uint8_t> cp_to_byte;
  ByteTable() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      uint32_t cp = printable ? b : next++;
      append_utf8(byte_to_utf8[b], cp);
      cp_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteTable& byte_table() {
  static const ByteTable t;
  return t;
}

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// Decodes one UTF-8 code point at s[i]; returns its length (1 for an invalid byte, cp = 0xFFFFFFFF).
size_t next_cp(std::string_view s, size_t i, uint32_t& cp) {
  auto c = static_cast<uint8_t>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    cp = 0xFFFFFFFF;
    return 1;
  }
  cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  return n;
}

class BpeTokenizer final : public TokenizerImpl {
 public:
  explicit BpeTokenizer(std::shared_ptr<const Vocab> vp) : v_(std::move(vp)), pre_(v_->pre) {
    const Vocab& v = *v_;
    token_id_.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) token_id_.emplace(v.tokens[i], static_cast<int32_t>(i));
    merges_.reserve(v.merges.size());
    for (size_t r = 0; r < v.merges.size(); ++r) {
      const std::string& m = v.merges[r];
      size_t sp = m.find(' ', 1);
      TERN_CHECK(sp != std::string::npos && sp + 1 < m.size(), "merge {} '{}' is not 'left right'", r, m);
      int32_t a = lookup(m.substr(0, sp)), b = lookup(m.substr(sp + 1));
      int32_t ab = lookup(m.substr(0, sp) + m.substr(sp + 1));
      TERN_CHECK(a >= 0 && b >= 0 && ab >= 0, "merge {} '{}' uses a token missing from the vocabulary", r, m);
      merges_.emplace(pair_key(a, b), Merge{static_cast<int32_t>(r), ab});  // first (lowest rank) wins
    }
    const ByteTable& bt = byte_table();
    for (int b = 0; b < 256; ++b) byte_id_[b] = lookup(bt.byte_to_utf8[b]);
  }

  void encode(std::string_view text, bool, std::vector<int32_t>& out) const override {
    for (std::string_view piece : pre_.split(text)) encode_piece(piece, out);
  }

  std::string piece(int32_t id) const override {
    const std::string& t = v_->tokens[id];
    const ByteTable& bt = byte_table();
    std::string out;
    for (size_t i = 0; i < t.size();) {
      uint32_t cp;
      size_t n = next_cp(t, i, cp);
      auto it = bt.cp_to_byte.find(cp);
      // A character outside the byte table (not produced by encode) is kept as its own UTF-8.
      if (it != bt.cp_to_byte.end()) out += static_cast<char>(it->second);
      else out.append(t, i, n);
      i += n;
    }
    return out;
  }

 private:
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // linked list over the piece; -1 at the ends
  };
  struct Candidate {
    int32_t rank, left, right_id, left_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };

  int32_t lookup(const std::string& s) const {
    auto it = token_id_.find(s);
    return it == token_id_.end() ? -1 : it->second;
  }

  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    const ByteTable& bt = byte_table();
    if (pre_.ignore_merges()) {
      std::string mapped;
      for (char c : piece) mapped += bt.byte_to_utf8[static_cast<uint8_t>(c)];
      if (int32_t id = lookup(mapped); id >= 0) {
        out.push_back(id);
        return;
      }
    }
    std::vector<Symbol> sym;
    sym.reserve(piece.size());
    for (char c : piece) {
      int32_t id = byte_id_[static_cast<uint8_t>(c)];
      if (id < 0) id = v_->unk;
      if (id < 0) continue;  // HF drops characters it cannot represent when there is no unk token
      sym.push_back({id, static_cast<int32_t>(sym.size()) - 1, static_cast<int32_t>(sym.size()) + 1});
    }
    if (sym.empty()) return;
    sym.back().next = -1;

    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
    auto consider = [&](int32_t l) {
      if (l < 0 || sym[l].next < 0) return;
      int32_t r = sym[l].next;
      auto it = merges_.find(pair_key(sym[l].id, sym[r].id));
      if (it != merges_.end()) heap.push({it->second.rank, l, sym[r].id, sym[l].id});
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) consider(i);
    while (!heap.empty()) {
      Candidate c = heap.top();
      heap.pop();
      Symbol& l = sym[c.left];
      // Stale entry: the left symbol was merged away or changed, or its right neighbour changed.
      if (l.id != c.left_id || l.next < 0 || sym[l.next].id != c.right_id) continue;
      int32_t r = l.next;
      l.id = merges_.at(pair_key(c.left_id, c.right_id)).id;
      l.next = sym[r].next;
      if (l.next >= 0) sym[l.next].prev = c.left;
      sym[r].id = -1;  // dead
      consider(l.prev);
      consider(c.left);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
  }

  std::shared_ptr<const Vocab> v_;
  PreTokenizer pre_;
  std::unordered_map<std::string, int32_t> token_id_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t byte_id_[256];
};

}  // namespace

std::unique_ptr<TokenizerImpl> make_bpe(std::shared_ptr<const Vocab> vocab) {
  return std::make_unique<BpeTokenizer>(std::move(vocab));
}

}  // namespace tern::detail
