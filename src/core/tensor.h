// A non-owning view of a tensor: data pointer, dtype, shape and byte strides, device.
// Dimension 0 is the innermost (contiguous) one, as in GGUF/ggml: a weight of shape [n_in, n_out]
// stores n_out rows of n_in elements. Quantised types are only viewed as whole rows of blocks.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace tern {

enum class Device : uint8_t { CPU, CUDA };

struct TensorView {
  static constexpr int kMaxDims = 4;

  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  int ndim = 0;
  std::array<int64_t, kMaxDims> ne{1, 1, 1, 1};  // elements per dimension
  std::array<size_t, kMaxDims> nb{0, 0, 0, 0};   // bytes between consecutive indices
  // How a backend rearranged a weight's blocks at load (Backend::prepare_weight); 0 is the file's
  // row-major layout, the only one row() addresses. Others are the backend's own business.
  uint8_t layout = 0;

  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t nrows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_size() const { return row_bytes(dtype, ne[0]); }
  bool is_contiguous() const;

  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }
  // Pointer to row (i1, i2, i3).
  void* row(int64_t i1, int64_t i2 = 0, int64_t i3 = 0) const {
    return static_cast<char*>(data) + i1 * nb[1] + i2 * nb[2] + i3 * nb[3];
  }

  // A contiguous view over existing memory.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape,
                               Device device = Device::CPU);
};

}  // namespace tern
