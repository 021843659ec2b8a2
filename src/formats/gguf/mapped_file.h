// Read-only memory mapping of a whole file (RAII). Model weights are used in place from the mapping,
// so opening a multi-GB file costs page-table entries, not a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tern::gguf {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws tern::Error "<path>: cannot open: <strerror>", "<path>: is a directory", "<path>: empty file".
  static MappedFile open(const std::string& path);

  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // Drops the whole pages inside [p, p + n) from this process's resident memory (MADV_DONTNEED on a
  // read-only private file mapping: reading them again faults them back in from the file).
  void release(const void* p, size_t n) const;
  bool contains(const void* p) const {
    const auto* b = static_cast<const uint8_t*>(p);
    return data_ && b >= data_ && b < data_ + size_;
  }

 private:
  void reset();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tern::gguf
