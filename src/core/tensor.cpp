#include "core/tensor.h"

#include "core/error.h"

namespace tern {

bool TensorView::is_contiguous() const {
  if (nb[0] != traits(dtype).block_bytes / static_cast<size_t>(traits(dtype).block_elems) &&
      traits(dtype).block_elems == 1)
    return false;
  size_t expect = row_size();
  for (int d = 1; d < kMaxDims; ++d) {
    if (ne[d] > 1 && nb[d] != expect) return false;
    expect *= static_cast<size_t>(ne[d]);
  }
  return true;
}

TensorView TensorView::contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape,
                                  Device device) {
  TERN_CHECK(shape.size() >= 1 && shape.size() <= kMaxDims, "tensor rank {} not in 1..4", shape.size());
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.device = device;
  v.ndim = static_cast<int>(shape.size());
  int d = 0;
  for (int64_t n : shape) v.ne[d++] = n;
  const auto& tr = traits(dtype);
  TERN_CHECK(v.ne[0] % tr.block_elems == 0, "row of {} elements is not a multiple of {}'s block of {}",
             v.ne[0], tr.name, tr.block_elems);
  v.nb[0] = tr.block_elems == 1 ? tr.block_bytes : 0;
  v.nb[1] = v.row_size();
  for (int i = 2; i < kMaxDims; ++i) v.nb[i] = v.nb[i - 1] * static_cast<size_t>(v.ne[i - 1]);
  return v;
}

}  // namespace tern
