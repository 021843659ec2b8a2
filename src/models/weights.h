// Looking up weight tensors by name with shape and type checks, so a malformed or mismatched model
// file fails at load with the tensor named, never mid-forward.
#pragma once

#include <initializer_list>
#include <string>

#include "formats/gguf/gguf.h"
#include "ops/backend.h"

namespace tern {

class WeightLoader {
 public:
  WeightLoader(const gguf::File& file, Backend& backend) : file_(file), backend_(backend) {}
  // The tensor `name` with exactly shape `ne`, where the backend reads it (Backend::place_weight);
  // an empty view when optional and absent.
  TensorView get(const std::string& name, std::initializer_list<int64_t> ne, bool required = true);
  // A weight used only as a matmul's W: the backend may repack it (Backend::prepare_weight), and
  // then the file's pages of it are dropped from memory.
  TensorView get_matmul(const std::string& name, std::initializer_list<int64_t> ne, bool required = true);
  // Norm weights and other small vectors must be F32.
  TensorView get_f32(const std::string& name, int64_t n);
  size_t bytes_loaded() const { return bytes_; }
  // The backend's matmul copy of a tensor already loaded with get() (a tied output head), whose
  // file pages are then dropped (the file view stays readable, but reading it brings them back).
  TensorView prepare(const TensorView& file_view) { return adopt(file_view, backend_.prepare_weight(file_view)); }
  // True when `v` reads the mapped file (the backend placed no copy of its own).
  bool in_file(const TensorView& v) const;

 private:
  // The tensor as the file holds it (mapped), checked.
  TensorView find(const std::string& name, std::initializer_list<int64_t> ne, bool required);
  // Drops the file's pages of `file_view` once the backend holds its own copy.
  TensorView adopt(const TensorView& file_view, const TensorView& backend_view);
  const gguf::File& file_;
  Backend& backend_;
  size_t bytes_ = 0;
};

// Metadata getters for "<arch>.<key>" with the error naming the key.
int64_t arch_int(const gguf::File& f, const std::string& arch, const std::string& key);
int64_t arch_int_or(const gguf::File& f, const std::string& arch, const std::string& key, int64_t fallback);
double arch_float_or(const gguf::File& f, const std::string& arch, const std::string& key, double fallback);

}  // namespace tern
