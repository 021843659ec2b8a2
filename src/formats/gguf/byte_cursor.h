// Bounds-checked little-endian reader over an untrusted byte image. Every read names the field it
// is reading so that a truncated or lying file produces "<path>: truncated reading <field> ...".
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/error.h"

namespace tern::gguf {

// GGUF is little-endian on disk; we memcpy fields straight into host integers.
static_assert(std::endian::native == std::endian::little, "tern's GGUF reader assumes a little-endian host");

class ByteCursor {
 public:
  ByteCursor(const uint8_t* data, size_t size, const std::string& path) : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  const uint8_t* here() const { return data_ + pos_; }

  template <typename T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  uint8_t u8(std::string_view what) { return read<uint8_t>(what); }
  uint32_t u32(std::string_view what) { return read<uint32_t>(what); }
  uint64_t u64(std::string_view what) { return read<uint64_t>(what); }

  // Skips n bytes; the caller has not allocated anything from n, so a huge n just fails here.
  const uint8_t* bytes(uint64_t n, std::string_view what) {
    need(n, what);
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }

  // A GGUF string: u64 length then that many bytes (no terminator). The length is checked against
  // the bytes left before anything is read, so a lying length never turns into an allocation.
  std::string_view str(std::string_view what) {
    const uint64_t n = u64(what);
    TERN_CHECK(n <= remaining(), "{}: {}: string length {} exceeds the {} bytes left in the file (at offset {})",
               path_, what, n, remaining(), pos_ - 8);
    const auto* p = reinterpret_cast<const char*>(data_ + pos_);
    pos_ += static_cast<size_t>(n);
    return {p, static_cast<size_t>(n)};
  }

 private:
  void need(uint64_t n, std::string_view what) const {
    TERN_CHECK(n <= remaining(), "{}: truncated reading {} at offset {} (need {} bytes, {} left)", path_, what, pos_,
               n, remaining());
  }

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

}  // namespace tern::gguf
