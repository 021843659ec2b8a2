#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/fp8.h"
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

// FP8 E4M3 (the KV cache's 8-bit float): every finite code decodes and encodes back to itself,
// conversion rounds to nearest even, saturates at 448, and the type never comes from a file.
TEST(Fp8E4M3, RoundTripsEveryCodeRoundsToEvenAndSaturates) {
  for (int c = 0; c < 256; ++c) {
    const float v = tern::fp8_e4m3_to_f32(static_cast<uint8_t>(c));
    if ((c & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(v)) << c;
      continue;
    }
    const uint8_t back = tern::f32_to_fp8_e4m3(v);
    if (c == 0x80) EXPECT_EQ(back, 0x80);  // -0 stays -0
    else EXPECT_EQ(back, c) << c << " " << v;
  }
  EXPECT_EQ(tern::fp8_e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(tern::fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(tern::f32_to_fp8_e4m3(1000.0f), 0x7E);
  EXPECT_EQ(tern::f32_to_fp8_e4m3(-1e30f), 0xFE);
  EXPECT_EQ(tern::f32_to_fp8_e4m3(INFINITY), 0x7E);
  EXPECT_EQ(tern::f32_to_fp8_e4m3(std::nanf("")), 0x7F);
  // 1.0625 lies halfway between 1.0 (0x38) and 1.125 (0x39): to even, 0x38; 1.1875 between
  // 1.125 and 1.25 (0x3A): to even, 0x3A.
  EXPECT_EQ(tern::f32_to_fp8_e4m3(1.0625f), 0x38);
  EXPECT_EQ(tern::f32_to_fp8_e4m3(1.1875f), 0x3A);
  EXPECT_EQ(tern::f32_to_fp8_e4m3(1.07f), 0x39);
  // Halfway between the largest subnormal (7/8 * 2^-6) and the smallest normal (2^-6): to even, normal.
  EXPECT_EQ(tern::f32_to_fp8_e4m3(15.0f / 16 * 0.015625f), 0x08);
  EXPECT_FALSE(tern::dtype_traits(static_cast<uint32_t>(tern::DType::F8_E4M3))->in_files);
}
