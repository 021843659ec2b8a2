// F32, F16 and BF16 rows: element-wise conversions with round-to-nearest-even (as numpy and ggml).
#include "core/fp16.h"
#include "quant/codec.h"

namespace tern::quant {
namespace {

// A plain type is a "block" of one element stored as Bits.
template <class Bits, float (*ToF32)(Bits), Bits (*FromF32)(float), DType dtype>
struct Plain {
  static void decode(const Bits& b, float* y) { *y = ToF32(b); }
  static void encode(const float* x, const float*, Bits& b) { b = FromF32(*x); }
  // As weights they take activations of their own type (ggml rounds activations to f16 for f16
  // weights, to bf16 for bf16).
  static constexpr RowCodec codec = with_dot<Bits, Bits, 1, dot_decoded<Bits, Bits, 1, decode, decode>>(
      make_codec<Bits, 1, decode, encode>(), dtype);
};

float f32_id(float x) { return x; }
using F32 = Plain<float, f32_id, f32_id, DType::F32>;
using F16 = Plain<uint16_t, fp16_to_f32, f32_to_fp16, DType::F16>;
using BF16 = Plain<uint16_t, bf16_to_f32, f32_to_bf16, DType::BF16>;

}  // namespace

const RowCodec* float_codec(DType t) {
  switch (t) {
    case DType::F32: return &F32::codec;
    case DType::F16: return &F16::codec;
    case DType::BF16: return &BF16::codec;
    default: return nullptr;
  }
}

}  // namespace tern::quant
