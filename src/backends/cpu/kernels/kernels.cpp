#include "backends/cpu/kernels/kernels.h"

#include "core/error.h"
#include "quant/quant.h"

namespace tern::cpu {

Kernels make_avx2_kernels();  // kernels_avx2.cpp

namespace {

template <DType W>
float generic_vec_dot(const void* w, const void* a, int64_t n) {
  return quant::vec_dot(W, w, a, n);
}

template <DType... Ts>
Kernels generic_table() {
  static_assert(((static_cast<size_t>(Ts) < kTypeSlots) && ...));
  Kernels k{};
  ((k.vec_dot[static_cast<size_t>(Ts)] = generic_vec_dot<Ts>), ...);
  return k;
}

// Every matmul weight type, through the scalar reference arithmetic.
Kernels make_generic_kernels() {
  return generic_table<DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                       DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K>();
}

}  // namespace

const Kernels& kernels(Isa isa) {
  static const Kernels generic = make_generic_kernels();
  switch (isa) {
    case Isa::Generic: return generic;
    case Isa::Avx2: {
      TERN_CHECK(isa_supported(Isa::Avx2), "avx2 kernels requested on a CPU without AVX2/FMA/F16C");
      static const Kernels avx2 = make_avx2_kernels();
      return avx2;
    }
  }
  return generic;
}

VecDotFn vec_dot_for(Isa isa, DType w) {
  const auto slot = static_cast<size_t>(w);
  TERN_CHECK(slot < kTypeSlots, "vec_dot: type id {} out of range", slot);
  if (VecDotFn f = kernels(isa).vec_dot[slot]) return f;
  VecDotFn g = kernels(Isa::Generic).vec_dot[slot];
  TERN_CHECK(g, "{}: not a matmul weight type", dtype_name(w));
  return g;
}

}  // namespace tern::cpu
