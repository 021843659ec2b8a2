// GGUF v2/v3 reader (mmap, validated before use) and writer.
// Everything in a model file is untrusted: the reader checks every count, length, type and offset
// against the bytes that are really there before anything else touches them, and every error names
// the file and the field at fault.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace tern::gguf {

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view value_type_name(ValueType t);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  int ndim = 0;
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // ne[0] innermost
  uint64_t offset = 0;                     // from the start of the data section
  size_t nbytes = 0;
  const void* data = nullptr;              // inside the mapping
  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class File {
 public:
  // Maps and validates `path`. Throws tern::Error "<path>: <what is wrong>" on any problem.
  static File open(const std::string& path);
  // Validates an in-memory image (tests, fuzzing). `name` is used in error messages.
  static File from_bytes(std::vector<uint8_t> bytes, std::string name);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  const std::string& path() const;
  // Drops the resident pages of a tensor's data that tern no longer reads (it keeps its own
  // repacked copy); the data stays readable.
  void release_pages(const void* p, size_t n) const;
  // True when p points into the mapped file (not a backend's copy, not an in-memory image).
  bool maps(const void* p) const;
  uint32_t version() const;
  size_t alignment() const;
  size_t file_size() const;

  // Metadata, in file order.
  const std::vector<std::string>& keys() const;
  bool has(std::string_view key) const;
  ValueType type_of(std::string_view key) const;                // throws if missing
  ValueType array_type(std::string_view key) const;             // element type; throws if not an array
  size_t array_size(std::string_view key) const;

  // Typed getters throw "<path>: metadata 'key' is <type>, expected <type>" or "... missing".
  // get_int/get_uint accept any integer type whose value fits.
  int64_t get_int(std::string_view key) const;
  uint64_t get_uint(std::string_view key) const;
  double get_float(std::string_view key) const;   // F32 or F64
  bool get_bool(std::string_view key) const;
  std::string_view get_string(std::string_view key) const;
  std::vector<std::string_view> get_string_array(std::string_view key) const;
  std::vector<double> get_float_array(std::string_view key) const;  // F32/F64 elements
  std::vector<int64_t> get_int_array(std::string_view key) const;   // any integer elements

  std::optional<int64_t> find_int(std::string_view key) const;        // nullopt if missing
  std::optional<double> find_float(std::string_view key) const;
  std::optional<std::string_view> find_string(std::string_view key) const;
  std::optional<bool> find_bool(std::string_view key) const;

  // Printable rendering of a value (arrays summarised), for `tern info`.
  std::string value_to_string(std::string_view key, size_t max_items = 8) const;

  const std::vector<TensorInfo>& tensors() const;
  const TensorInfo* find_tensor(std::string_view name) const;  // nullptr if absent

 private:
  friend class Writer;  // copy_key copies a value's validated bytes verbatim
  // The value's bytes as stored after its type field (already validated), for Writer::copy_key.
  std::string_view raw_value(std::string_view key, ValueType* type) const;
  struct Impl;
  explicit File(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Builds a GGUF image: metadata in insertion order, tensors aligned. Used by our tools (random
// models, quantisers) and by the malformed-file tests.
class Writer {
 public:
  explicit Writer(uint32_t version = 3, size_t alignment = 32);
  void set_u8(std::string key, uint8_t v);
  void set_i8(std::string key, int8_t v);
  void set_u16(std::string key, uint16_t v);
  void set_i16(std::string key, int16_t v);
  void set_u32(std::string key, uint32_t v);
  void set_i32(std::string key, int32_t v);
  void set_u64(std::string key, uint64_t v);
  void set_i64(std::string key, int64_t v);
  void set_f32(std::string key, float v);
  void set_f64(std::string key, double v);
  void set_bool(std::string key, bool v);
  void set_string(std::string key, std::string v);
  void set_string_array(std::string key, std::vector<std::string> v);
  void set_f32_array(std::string key, std::vector<float> v);
  void set_i32_array(std::string key, std::vector<int32_t> v);
  // Copy metadata key `key` from another file (any type).
  void copy_key(const File& from, std::string_view key);
  // `data` must hold exactly row_bytes(dtype, ne[0]) * rows bytes.
  void add_tensor(std::string name, DType dtype, std::vector<int64_t> ne, const void* data, size_t nbytes);
  // A tensor whose bytes are produced while the file is written (write with a TensorSource), so a
  // model never has to be in memory whole: quantisers hold one tensor at a time.
  void declare_tensor(std::string name, DType dtype, std::vector<int64_t> ne);
  std::vector<uint8_t> to_bytes() const;       // throws if a tensor was only declared
  void write(const std::string& path) const;  // writes to path.tmp then renames

  // Fills `out` (exactly the tensor's byte size) with the bytes of declared tensor `index`
  // (its position among all tensors, in the order they were added). Called once per declared
  // tensor, in file order; an exception from it removes path.tmp and propagates.
  using TensorSource = std::function<void(size_t index, std::span<uint8_t> out)>;
  void write(const std::string& path, const TensorSource& source) const;

 private:
  struct Kv;
  struct Tensor;
  uint32_t version_;
  size_t alignment_;
  std::vector<std::shared_ptr<Kv>> kvs_;
  std::vector<std::shared_ptr<Tensor>> tensors_;  // shared_ptr: Tensor is incomplete here
  void add_kv(std::shared_ptr<Kv> kv);
  size_t check_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& ne) const;  // -> bytes
  std::vector<uint8_t> header_bytes() const;  // everything before the tensor data, padded
};

}  // namespace tern::gguf
