// PCRE2 (UTF + UCP so \s, \p{L}, \p{N} are Unicode-aware) implementation of the pre-tokenizers.
// The patterns are those of the models' tokenizer.json files (also llama.cpp's llama-vocab.cpp).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenize.h"

#include <pcre2.h>

#include "core/error.h"

namespace tern {

namespace {

// GPT-2's pattern as HF's ByteLevel pre-tokenizer uses it. The final `\s+` (absent in llama.cpp's
// copy) matters: it takes a lone whitespace char before a non-space, e.g. the "\t" in "a\tb".
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kDigitsIndividually = R"(\p{N})";
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  explicit Regex(const char* pattern) {
    int err = 0;
    PCRE2_SIZE off = 0;
    // MATCH_INVALID_UTF: user text may not be valid UTF-8; invalid bytes then never match and end up
    // in the gaps between matches instead of failing the whole call.
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("pre-tokenizer regex does not compile at {}: {}", off, reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort: the interpreter is the fallback
  }
  ~Regex() { pcre2_code_free(code); }

  // Appends the matches of this regex in `s` and the gaps between them, in order.
  void split(std::string_view s, std::vector<std::string_view>& out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    TERN_CHECK(md != nullptr, "pre-tokenizer: out of memory");
    auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
    size_t pos = 0, emitted = 0;
    while (pos <= s.size()) {
      int rc = pcre2_match(code, subject, s.size(), pos, 0, md, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        pcre2_match_data_free(md);
        fail("pre-tokenizer: regex match failed (pcre2 error {})", rc);
      }
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // none of our patterns match empty, but never loop forever if one does
        ++pos;
        continue;
      }
      if (b > emitted) out.push_back(s.substr(emitted, b - emitted));
      out.push_back(s.substr(b, e - b));
      emitted = pos = e;
    }
    pcre2_match_data_free(md);
    if (emitted < s.size()) out.push_back(s.substr(emitted));
  }
};

PreTokenizer::PreTokenizer(std::string_view name) {
  std::vector<const char*> patterns;
  if (name == "gpt2" || name == "default" || name == "mpt" || name == "olmo" || name == "jais") {
    patterns = {kGpt2};
  } else if (name == "smollm" || name == "starcoder" || name == "refact" || name == "command-r" ||
             name == "codeshell" || name == "exaone" || name == "minerva-7b") {
    patterns = {kDigitsIndividually, kGpt2};
  } else if (name == "llama3" || name == "llama-bpe" || name == "llama-v3" || name == "smaug-bpe") {
    patterns = {kLlama3};
    ignore_merges_ = true;
  } else if (name == "qwen2" || name == "stablelm2" || name == "deepseek-r1-qwen") {
    patterns = {kQwen2};
  } else {
    fail("unsupported pre-tokenizer '{}' (supported: gpt2, smollm, starcoder, llama-bpe, qwen2, ...)", name);
  }
  for (const char* p : patterns) regexes_.push_back(std::make_unique<Regex>(p));
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces{text}, next;
  if (text.empty()) return {};
  for (const auto& re : regexes_) {
    next.clear();
    for (std::string_view p : pieces) re->split(p, next);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace tern
