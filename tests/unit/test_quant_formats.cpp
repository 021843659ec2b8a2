// Reference quant formats: round-trip error per type, special rows, layout facts, buffer bounds and
// length validation. Bit-compatibility with ggml is tests/python/test_quant_parity.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/quant.h"

using namespace tern;
using tern::quant::dequantize_row;
using tern::quant::quantize_row;

namespace {

// Bound on RMS(reconstruction - input) / RMS(input) for N(0,1) rows. Comments give the worst value
// measured over 20 seeds x {1,3,7,16} blocks, with and without importance weights; bounds have ~25%
// headroom. (Q8_K is coarser than Q8_0: one scale per 256 elements instead of per 32.)
struct TypeCase {
  DType type;
  double rel_rmse;
};
const TypeCase kCases[] = {
    {DType::F32, 0.0},
    {DType::F16, 5e-4},     // 0.00025
    {DType::BF16, 4e-3},    // 0.0021
    {DType::Q4_0, 0.14},    // 0.110
    {DType::Q4_1, 0.12},    // 0.097
    {DType::Q5_0, 0.075},   // 0.058
    {DType::Q5_1, 0.065},   // 0.050
    {DType::Q8_0, 0.009},   // 0.0071
    {DType::Q8_1, 0.009},   // 0.0071
    {DType::Q2_K, 0.42},    // 0.343
    {DType::Q3_K, 0.21},    // 0.165
    {DType::Q4_K, 0.10},    // 0.078
    {DType::Q5_K, 0.05},    // 0.040
    {DType::Q6_K, 0.025},   // 0.020
    {DType::Q8_K, 0.011},   // 0.0083
};

// Names the case in test listings (ctest would otherwise show the parameter's bytes).
void PrintTo(const TypeCase& c, std::ostream* os) { *os << dtype_name(c.type); }

std::string case_name(const testing::TestParamInfo<TypeCase>& info) {
  return std::string(dtype_name(info.param.type));
}

int64_t block_of(DType t) { return traits(t).block_elems; }

std::vector<float> gaussian(int64_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<float> round_trip(DType t, const std::vector<float>& x, const float* importance = nullptr) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(row_bytes(t, n));
  quantize_row(t, x.data(), q.data(), n, importance);
  std::vector<float> y(x.size());
  dequantize_row(t, q.data(), y.data(), n);
  return y;
}

double rms(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return std::sqrt(s / v.size());
}

double rel_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
  return std::sqrt(s / x.size()) / rms(x);
}

// Row lengths: 1, 3 and 7 blocks (odd counts catch off-by-one block strides), plus one long row.
std::vector<int64_t> lengths(DType t) {
  const int64_t b = block_of(t) == 1 ? 32 : block_of(t);
  return {b, 3 * b, 7 * b, 16 * b};
}

class QuantType : public testing::TestWithParam<TypeCase> {};

TEST_P(QuantType, GaussianRoundTripWithinBound) {
  const auto [t, bound] = GetParam();
  for (int64_t n : lengths(t)) {
    const auto x = gaussian(n, static_cast<uint32_t>(n));
    const double e = rel_rmse(x, round_trip(t, x));
    EXPECT_LE(e, bound) << dtype_name(t) << " n=" << n;
    if (n == 16 * block_of(t)) RecordProperty(std::string(dtype_name(t)) + "_rel_rmse", std::to_string(e));
  }
}

TEST_P(QuantType, ImportanceWeightsStayWithinBound) {
  const auto [t, bound] = GetParam();
  const int64_t n = 8 * (block_of(t) == 1 ? 32 : block_of(t));
  const auto x = gaussian(n, 99);
  std::vector<float> ones(x.size(), 1.f), skewed(x.size());
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0.1f, 2.f);
  for (auto& w : skewed) w = u(rng);
  EXPECT_LE(rel_rmse(x, round_trip(t, x, ones.data())), bound) << dtype_name(t);
  EXPECT_LE(rel_rmse(x, round_trip(t, x, skewed.data())), bound) << dtype_name(t);
}

TEST_P(QuantType, ZerosAreExact) {
  const DType t = GetParam().type;
  const std::vector<float> x(static_cast<size_t>(3 * block_of(t) * (block_of(t) == 1 ? 32 : 1)), 0.f);
  for (float y : round_trip(t, x)) EXPECT_EQ(y, 0.f) << dtype_name(t);
}

TEST_P(QuantType, ConstantRowsWithinBound) {
  const auto [t, bound] = GetParam();
  const int64_t n = 3 * (block_of(t) == 1 ? 32 : block_of(t));
  // Magnitudes stay >= 0.5: Q6_K stores its super-block scale as (sub-block scale)/128 in f16, which
  // goes subnormal (and loses precision) for rows much smaller than that; ggml's format has the
  // same limit.
  for (float c : {0.75f, -3.5f, 250.f}) {
    const std::vector<float> x(static_cast<size_t>(n), c);
    EXPECT_LE(rel_rmse(x, round_trip(t, x)), std::max(bound, 1e-3)) << dtype_name(t) << " c=" << c;
  }
}

TEST_P(QuantType, NegativeOnlyRowWithinBound) {
  const auto [t, bound] = GetParam();
  const int64_t n = 5 * (block_of(t) == 1 ? 32 : block_of(t));
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.5f, 4.f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = -u(rng);
  EXPECT_LE(rel_rmse(x, round_trip(t, x)), bound) << dtype_name(t);
}

TEST_P(QuantType, SingleOutlierIsKeptAndStaysLocal) {
  // The outlier coarsens only its own block's scale: it is itself reproduced to the type's relative
  // precision, and the other blocks keep their usual error.
  const auto [t, bound] = GetParam();
  const int64_t block = block_of(t) == 1 ? 32 : block_of(t);
  const int64_t n = 3 * block;
  auto x = gaussian(n, 3);
  const size_t at = static_cast<size_t>(block + 5);  // in the middle block
  x[at] = 50.f;
  const auto y = round_trip(t, x);
  EXPECT_NEAR(y[at], 50.f, 50.f * std::max(bound, 1e-3)) << dtype_name(t);
  std::vector<float> xo, yo;
  for (int64_t i = 0; i < n; ++i) {
    if (i / block == 1) continue;
    xo.push_back(x[size_t(i)]);
    yo.push_back(y[size_t(i)]);
  }
  EXPECT_LE(rel_rmse(xo, yo), bound) << dtype_name(t);
}

TEST_P(QuantType, WritesStayInsideOutputBuffers) {
  // Sentinel bytes on both sides of each output; the outputs are deliberately misaligned by one byte
  // (quantised) so that the code must not assume aligned block fields.
  const DType t = GetParam().type;
  const int64_t n = 3 * (block_of(t) == 1 ? 32 : block_of(t));
  const auto x = gaussian(n, 17);
  constexpr size_t kPad = 64;
  constexpr uint8_t kSentinel = 0xA5;
  const size_t bytes = row_bytes(t, n);
  std::vector<uint8_t> q(bytes + 2 * kPad + 1, kSentinel);
  quantize_row(t, x.data(), q.data() + kPad + 1, n);
  for (size_t i = 0; i < kPad + 1; ++i) ASSERT_EQ(q[i], kSentinel) << dtype_name(t) << " before, at " << i;
  for (size_t i = kPad + 1 + bytes; i < q.size(); ++i) ASSERT_EQ(q[i], kSentinel) << dtype_name(t) << " after";

  std::vector<float> y(static_cast<size_t>(n) + 2 * kPad);
  std::memset(y.data(), kSentinel, y.size() * sizeof(float));
  dequantize_row(t, q.data() + kPad + 1, y.data() + kPad, n);
  float sentinel;
  std::memset(&sentinel, kSentinel, sizeof sentinel);
  for (size_t i = 0; i < y.size(); ++i) {
    if (i >= kPad && i < kPad + static_cast<size_t>(n)) continue;
    ASSERT_EQ(std::memcmp(&y[i], &sentinel, sizeof(float)), 0) << dtype_name(t) << " at " << i;
  }
}

TEST_P(QuantType, RowLengthNotAMultipleOfTheBlockThrows) {
  const DType t = GetParam().type;
  if (block_of(t) == 1) GTEST_SKIP() << "every length is a whole number of elements";
  const int64_t n = block_of(t) + 1;
  std::vector<float> x(static_cast<size_t>(n), 1.f), y(x.size());
  std::vector<uint8_t> q(row_bytes(t, n) + traits(t).block_bytes);
  for (auto call : {0, 1}) {
    try {
      if (call == 0)
        quantize_row(t, x.data(), q.data(), n);
      else
        dequantize_row(t, q.data(), y.data(), n);
      ADD_FAILURE() << dtype_name(t) << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(dtype_name(t)), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(quant::can_quantize(t));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, QuantType, testing::ValuesIn(kCases), case_name);

TEST(QuantFormats, BlockStructsMatchTraits) {
  EXPECT_EQ(sizeof(quant::BlockQ4_0), traits(DType::Q4_0).block_bytes);
  EXPECT_EQ(sizeof(quant::BlockQ4_1), traits(DType::Q4_1).block_bytes);
  EXPECT_EQ(sizeof(quant::BlockQ5_0), traits(DType::Q5_0).block_bytes);
  EXPECT_EQ(sizeof(quant::BlockQ5_1), traits(DType::Q5_1).block_bytes);
  EXPECT_EQ(sizeof(quant::BlockQ8_0), traits(DType::Q8_0).block_bytes);
  EXPECT_EQ(sizeof(quant::BlockQ8_1), traits(DType::Q8_1).block_bytes);
  EXPECT_EQ(sizeof(quant::BlockQ2_K), traits(DType::Q2_K).block_bytes);
  EXPECT_EQ(sizeof(quant::BlockQ3_K), traits(DType::Q3_K).block_bytes);
  EXPECT_EQ(sizeof(quant::BlockQ4_K), traits(DType::Q4_K).block_bytes);
  EXPECT_EQ(sizeof(quant::BlockQ5_K), traits(DType::Q5_K).block_bytes);
  EXPECT_EQ(sizeof(quant::BlockQ6_K), traits(DType::Q6_K).block_bytes);
  EXPECT_EQ(sizeof(quant::BlockQ8_K), traits(DType::Q8_K).block_bytes);
}

TEST(QuantFormats, UnsupportedTypesAreRejected) {
  EXPECT_FALSE(quant::can_quantize(DType::I8));
  float y[4];
  const uint8_t src[4] = {};
  EXPECT_THROW(dequantize_row(DType::I32, src, y, 1), Error);
}

TEST(QuantFormats, HalfTypesRoundTripRepresentableValuesExactly) {
  for (DType t : {DType::F16, DType::BF16}) {
    std::vector<uint16_t> bits;
    for (uint32_t h = 0; h < 65536; ++h) {
      const float f = t == DType::F16 ? fp16_to_f32(uint16_t(h)) : bf16_to_f32(uint16_t(h));
      if (!std::isnan(f)) bits.push_back(uint16_t(h));
    }
    const int64_t n = static_cast<int64_t>(bits.size());
    std::vector<float> f(bits.size());
    dequantize_row(t, bits.data(), f.data(), n);
    std::vector<uint16_t> back(bits.size());
    quantize_row(t, f.data(), back.data(), n);
    EXPECT_EQ(back, bits) << dtype_name(t);
  }
}

TEST(QuantFormats, Q4_0LayoutLowNibblesFirstHalf) {
  // ggml: element j is the low nibble of qs[j], element j+16 the high nibble; value (q - 8) * d.
  quant::BlockQ4_0 b;
  b.d = f32_to_fp16(0.5f);
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));
  float y[32];
  dequantize_row(DType::Q4_0, &b, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f);
    EXPECT_EQ(y[j + 16], (7 - j) * 0.5f);
  }
}

TEST(QuantFormats, Q8_1StoresScaledSum) {
  const auto x = gaussian(64, 21);
  quant::BlockQ8_1 b[2];
  quantize_row(DType::Q8_1, x.data(), b, 64);
  for (const auto& blk : b) {
    int sum = 0;
    for (int8_t q : blk.qs) sum += q;
    EXPECT_EQ(blk.s, f32_to_fp16(sum * fp16_to_f32(blk.d)));
  }
}

TEST(QuantFormats, Q8_KStoresGroupSumsAndF32Scale) {
  const auto x = gaussian(256, 23);
  quant::BlockQ8_K b;
  quantize_row(DType::Q8_K, x.data(), &b, 256);
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int i = 0; i < 16; ++i) sum += b.qs[16 * g + i];
    EXPECT_EQ(b.bsums[g], sum);
  }
  float y[256];
  dequantize_row(DType::Q8_K, &b, y, 256);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], b.d * b.qs[i]);
}

TEST(QuantFormats, LegacyReferenceRoundingOfTies) {
  // Q8_0 rounds half away from zero (roundf), as ggml's reference does: amax 127 gives d = 1.
  std::vector<float> x(32, 0.f);
  x[0] = 127.f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  quant::BlockQ8_0 b;
  quantize_row(DType::Q8_0, x.data(), &b, 32);
  EXPECT_EQ(b.qs[0], 127);
  EXPECT_EQ(b.qs[1], 3);
  EXPECT_EQ(b.qs[2], -3);
}

}  // namespace

// GPTQ's contract with the block formats: a block's grids describe exactly what it decodes to, and
// rewriting its levels keeps its scales (so the grids) and decodes to the grids' values.
TEST(QuantGrids, LevelsRewrittenDecodeToGridValues) {
  const DType types[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                         DType::Q3_K, DType::Q4_K, DType::Q5_K};
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0, 1);
  for (DType t : types) {
    const int64_t n = 512, g = quant::grid_group_size(t);
    ASSERT_GT(g, 0) << dtype_name(t);
    std::vector<float> x(n), y(n);
    for (auto& v : x) v = nd(rng);
    std::vector<uint8_t> row(row_bytes(t, n));
    quant::quantize_row(t, x.data(), row.data(), n);
    std::vector<quant::GroupGrid> grids(n / g), after(n / g);
    quant::row_grids(t, row.data(), n, grids.data());
    std::vector<int> levels(n);
    for (int64_t i = 0; i < n; ++i) {
      const auto& gr = grids[i / g];
      levels[i] = gr.lo + static_cast<int>(rng() % (gr.hi - gr.lo + 1));
    }
    quant::set_row_levels(t, row.data(), n, levels.data());
    quant::row_grids(t, row.data(), n, after.data());
    quant::dequantize_row(t, row.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const auto& gr = grids[i / g];
      ASSERT_EQ(after[i / g].scale, gr.scale) << dtype_name(t);
      ASSERT_EQ(after[i / g].offset, gr.offset) << dtype_name(t);
      ASSERT_NEAR(y[i], gr.value(levels[i]), 1e-6f * (1 + std::fabs(y[i]))) << dtype_name(t) << " element " << i;
      if (gr.scale != 0) ASSERT_EQ(gr.nearest(y[i]), levels[i]) << dtype_name(t) << " element " << i;
    }
  }
  EXPECT_EQ(quant::grid_group_size(DType::F16), 0);
  EXPECT_EQ(quant::grid_group_size(DType::Q6_K), 0);
  std::vector<uint8_t> b(row_bytes(DType::Q6_K, 256));
  quant::GroupGrid gg[16];
  EXPECT_THROW(quant::row_grids(DType::Q6_K, b.data(), 256, gg), std::exception);
}
