#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/tensor.h"

using namespace tern;

TEST(DType, TraitsMatchGgml) {
  EXPECT_EQ(traits(DType::Q4_0).block_bytes, 18u);
  EXPECT_EQ(traits(DType::Q6_K).block_bytes, 210u);
  EXPECT_EQ(traits(DType::Q4_K).block_elems, 256);
  EXPECT_EQ(row_bytes(DType::Q8_0, 64), 68u);
  EXPECT_FALSE(dtype_traits(4).has_value());  // Q4_2 was removed from GGUF
  EXPECT_EQ(*dtype_from_name("bf16"), DType::BF16);
}

TEST(Fp16, RoundTripAllHalves) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_fp16(f), h) << h;
  }
}

TEST(Fp16, RoundsToNearestEven) {
  EXPECT_EQ(f32_to_fp16(1.0f + 1.0f / 2048), f32_to_fp16(1.0f));       // tie -> even
  EXPECT_EQ(f32_to_fp16(1.0f + 3.0f / 2048), 0x3c02);                  // tie -> even (up)
  EXPECT_EQ(f32_to_fp16(65520.0f), 0x7c00);                            // overflows to inf
  EXPECT_EQ(f32_to_fp16(std::ldexp(1.0f, -25)), 0);                    // tie at smallest subnormal
  EXPECT_EQ(f32_to_fp16(std::ldexp(1.5f, -25)), 1);
}

TEST(Bf16, RoundTrip) {
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.5f)), 1.5f);
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), f32_to_bf16(1.0f));  // tie -> even
}

TEST(Tensor, ContiguousViewChecksBlocks) {
  std::vector<uint8_t> buf(18 * 4);
  auto v = TensorView::contiguous(buf.data(), DType::Q4_0, {64, 2});
  EXPECT_EQ(v.row_size(), 36u);
  EXPECT_EQ(v.nb[1], 36u);
  EXPECT_TRUE(v.is_contiguous());
  EXPECT_THROW(TensorView::contiguous(buf.data(), DType::Q4_0, {33, 2}), Error);
}
