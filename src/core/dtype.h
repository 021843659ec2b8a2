// Element and block types. Numeric values are GGUF's ggml_type ids so a tensor's type field in a
// GGUF file maps to DType with a range check and no table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tern {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  // tern's own, never in a file (an id far beyond GGUF's): KV cache storage only.
  F8_E4M3 = 0x10000,  // OCP FP8 E4M3 (1 sign, 4 exponent bits, 3 mantissa bits; no infinities)
};

struct DTypeTraits {
  std::string_view name;    // as llama.cpp prints it: "q4_0", "f16", ...
  int64_t block_elems;      // elements per block (1 for plain types)
  size_t block_bytes;       // bytes per block
  bool quantized;
  bool in_files = true;  // a GGUF tensor type (false: tern-internal storage)
};

// Traits for a known type; nullopt for an id that is not a type tern knows (e.g. from a file).
std::optional<DTypeTraits> dtype_traits(uint32_t id);
const DTypeTraits& traits(DType t);  // t must be a known type
inline std::string_view dtype_name(DType t) { return traits(t).name; }
std::optional<DType> dtype_from_name(std::string_view name);  // "q4_0" -> Q4_0

// Bytes of a row of n elements; n must be a multiple of the block size (checked by callers).
inline size_t row_bytes(DType t, int64_t n) {
  const auto& tr = traits(t);
  return static_cast<size_t>(n / tr.block_elems) * tr.block_bytes;
}

}  // namespace tern
