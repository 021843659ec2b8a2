// quant::vec_dot and quantize_activation_row: ggml's dot-product arithmetic (the peer's numerics).
// Checked against plain float dot products of the decoded rows, and on hand-built blocks for the two
// places where ggml's arithmetic is not the decoded one: Q8_1's stored f16 sum and x86's rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/k_unit_levels.h"
#include "quant/quant.h"

using namespace tern;

namespace {

std::vector<float> gaussian(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<uint8_t> quantized(DType t, const std::vector<float>& x, bool activation) {
  std::vector<uint8_t> q(row_bytes(t, static_cast<int64_t>(x.size())));
  if (activation)
    quant::quantize_activation_row(t, x.data(), q.data(), static_cast<int64_t>(x.size()));
  else
    quant::quantize_row(t, x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

std::vector<float> decoded(DType t, const std::vector<uint8_t>& q, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  quant::dequantize_row(t, q.data(), y.data(), n);
  return y;
}

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                              DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                              DType::Q4_K, DType::Q5_K, DType::Q6_K};

class VecDot : public testing::TestWithParam<DType> {};

// The dot product equals the decoded rows' float dot product up to summation order, except that for
// Q4_1/Q5_1 the min meets the activation's f16-rounded block sum: |m| * |s| * 2^-11 per block more.
TEST_P(VecDot, MatchesDecodedDotProduct) {
  const DType w = GetParam();
  const DType at = quant::vec_dot_type(w);
  const bool affine = w == DType::Q4_1 || w == DType::Q5_1;
  for (int64_t n : {256, 512, 2816}) {
    for (uint32_t seed = 1; seed <= 5; ++seed) {
      const auto wx = gaussian(n, seed), ax = gaussian(n, seed + 100);
      const auto wq = quantized(w, wx, false), aq = quantized(at, ax, true);
      const auto wd = decoded(w, wq, n), ad = decoded(at, aq, n);
      double exact = 0, magnitude = 0;
      for (int64_t i = 0; i < n; ++i) {
        exact += static_cast<double>(wd[i]) * ad[i];
        magnitude += std::fabs(static_cast<double>(wd[i]) * ad[i]);
      }
      const double tol = magnitude * (affine ? 2e-3 : 1e-5);
      const float got = quant::vec_dot(w, wq.data(), aq.data(), n);
      EXPECT_NEAR(got, exact, tol) << dtype_name(w) << " n=" << n << " seed=" << seed;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllWeights, VecDot, testing::ValuesIn(kWeightTypes),
                         [](const testing::TestParamInfo<DType>& i) { return std::string(dtype_name(i.param)); });

// The K-quants' integer unit dot products (quant/k_unit_levels.h, what the CUDA GEMV runs on dp4a),
// unit by unit from the blocks' bytes as words, equal the decoded rows' dot product up to float
// rounding: every unit j of every super-block, both nibble halves, Q5_K's fifth bits, Q6_K's signs
// and its two scales per unit.
TEST(VecDot, KQuantUnitLevelsMatchTheDecodedDotProduct) {
  auto words = [](const uint8_t* p, uint32_t (&w)[8]) { std::memcpy(w, p, sizeof w); };
  for (DType w : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    for (int64_t n : {256, 2816}) {
      for (uint32_t seed = 1; seed <= 4; ++seed) {
        const auto wx = gaussian(n, seed + 40), ax = gaussian(n, seed + 140);
        const auto wq = quantized(w, wx, false), aq = quantized(DType::Q8_K, ax, true);
        const auto wd = decoded(w, wq, n), ad = decoded(DType::Q8_K, aq, n);
        double exact = 0, magnitude = 0;
        for (int64_t i = 0; i < n; ++i) {
          exact += static_cast<double>(wd[i]) * ad[i];
          magnitude += std::fabs(static_cast<double>(wd[i]) * ad[i]);
        }
        const auto* act = reinterpret_cast<const quant::BlockQ8_K*>(aq.data());
        const size_t block = row_bytes(w, 256);
        double got = 0;
        for (int64_t u = 0; u < n / 32; ++u) {
          const uint8_t* b = wq.data() + (u / 8) * block;
          const int j = static_cast<int>(u % 8);
          quant::KUnitLevels l;
          uint32_t a[8];
          std::memcpy(a, act[u / 8].qs + 32 * j, sizeof a);
          if (w == DType::Q6_K) {
            quant::BlockQ6_K k;
            std::memcpy(&k, b, sizeof k);
            uint32_t ql[8], qh[8];
            words(k.ql + 64 * (j / 4) + 32 * (j % 2), ql);
            words(k.qh + 32 * (j / 4), qh);
            quant::q6k_unit(ql, qh, j, k.scales[2 * j], k.scales[2 * j + 1], fp16_to_f32(k.d), l);
            got += quant::k_unit_dot<false>(l, a, act[u / 8].d);
          } else {
            const bool five = w == DType::Q5_K;
            uint16_t d, dmin;
            std::memcpy(&d, b, 2);
            std::memcpy(&dmin, b + 2, 2);
            uint32_t sc[3], qs[8], qh[8] = {};
            std::memcpy(sc, b + 4, sizeof sc);
            words(b + (five ? 48 : 16) + 32 * (j / 2), qs);
            if (five) {
              words(b + 16, qh);
              quant::k45_unit<true>(qs, qh, sc, j, fp16_to_f32(d), fp16_to_f32(dmin), l);
            } else {
              quant::k45_unit<false>(qs, qh, sc, j, fp16_to_f32(d), fp16_to_f32(dmin), l);
            }
            got += quant::k_unit_dot<true>(l, a, act[u / 8].d);
          }
        }
        EXPECT_NEAR(got, exact, magnitude * 1e-5) << dtype_name(w) << " n=" << n << " seed=" << seed;
      }
    }
  }
}

TEST(VecDotType, IsGgmlsPairing) {
  EXPECT_EQ(quant::vec_dot_type(DType::Q4_0), DType::Q8_0);
  EXPECT_EQ(quant::vec_dot_type(DType::Q5_0), DType::Q8_0);
  EXPECT_EQ(quant::vec_dot_type(DType::Q8_0), DType::Q8_0);
  EXPECT_EQ(quant::vec_dot_type(DType::Q4_1), DType::Q8_1);
  EXPECT_EQ(quant::vec_dot_type(DType::Q5_1), DType::Q8_1);
  for (DType k : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    EXPECT_EQ(quant::vec_dot_type(k), DType::Q8_K);
  for (DType f : {DType::F32, DType::F16, DType::BF16}) EXPECT_EQ(quant::vec_dot_type(f), f);
}

TEST(VecDotType, ActivationOnlyTypesAreNotWeights) {
  for (DType t : {DType::Q8_1, DType::Q8_K}) {
    EXPECT_FALSE(quant::is_weight_type(t));
    EXPECT_THROW(quant::vec_dot_type(t), Error);
    std::vector<uint8_t> row(row_bytes(t, 256));
    EXPECT_THROW(quant::vec_dot(t, row.data(), row.data(), 256), Error);
  }
  EXPECT_TRUE(quant::is_weight_type(DType::Q4_1));
}

TEST(VecDot, RowLengthMustBeWholeBlocks) {
  std::vector<uint8_t> row(1024);
  EXPECT_THROW(quant::vec_dot(DType::Q4_0, row.data(), row.data(), 48), Error);
  EXPECT_THROW(quant::vec_dot(DType::Q4_K, row.data(), row.data(), 128), Error);
}

// Q4_1 x Q8_1 on hand-made blocks: d_w * d_a * sum(q_w * q_a) + m_w * s_a, with the activation's
// stored s rather than d_a * sum(q_a).
TEST(VecDot, AffineMinUsesTheActivationsStoredSum) {
  quant::BlockQ4_1 w{};
  w.d = f32_to_fp16(0.5f);
  w.m = f32_to_fp16(-2.0f);
  for (int j = 0; j < quant::kQK / 2; ++j) w.qs[j] = static_cast<uint8_t>((j % 16) | ((15 - j % 16) << 4));
  quant::BlockQ8_1 a{};
  a.d = f32_to_fp16(0.25f);
  a.s = f32_to_fp16(3.0f);  // deliberately not d * sum(qs)
  int sumi = 0;
  for (int e = 0; e < quant::kQK; ++e) {
    a.qs[e] = static_cast<int8_t>(e - 10);
    const int qw = e < 16 ? e % 16 : 15 - (e - 16) % 16;
    sumi += qw * a.qs[e];
  }
  const float want = 0.5f * 0.25f * static_cast<float>(sumi) + -2.0f * 3.0f;
  EXPECT_FLOAT_EQ(quant::vec_dot(DType::Q4_1, &w, &a, quant::kQK), want);
}

// x86 ggml rounds activations with scale 127/amax and ties to even; the format's reference
// quantiser (quantize_row, as gguf-py) rounds ties away from zero.
TEST(ActivationQuant, TiesGoToEvenAndSumIsStored) {
  std::vector<float> x(quant::kQK, 0.f);
  x[0] = 127.f;  // amax 127: scale 1, id exactly 1
  x[1] = 2.5f;
  x[2] = 3.5f;
  x[3] = -2.5f;
  x[4] = 0.5f;
  for (DType t : {DType::Q8_0, DType::Q8_1}) {
    const auto act = quantized(t, x, true), ref = quantized(t, x, false);
    const auto* qa = reinterpret_cast<const int8_t*>(act.data() + (t == DType::Q8_0 ? 2 : 4));
    const auto* qr = reinterpret_cast<const int8_t*>(ref.data() + (t == DType::Q8_0 ? 2 : 4));
    EXPECT_EQ(qa[1], 2);
    EXPECT_EQ(qa[2], 4);
    EXPECT_EQ(qa[3], -2);
    EXPECT_EQ(qa[4], 0);
    EXPECT_EQ(qr[1], 3);
    EXPECT_EQ(qr[3], -3);
    if (t == DType::Q8_1) {
      quant::BlockQ8_1 b;
      std::memcpy(&b, act.data(), sizeof b);
      EXPECT_EQ(fp16_to_f32(b.s), 127.f + 2 + 4 - 2 + 0);
    }
  }
}

TEST(ActivationQuant, OtherTypesAreTheFormatsQuantiser) {
  const auto x = gaussian(512, 7);
  for (DType t : {DType::F16, DType::BF16, DType::Q8_K})
    EXPECT_EQ(quantized(t, x, true), quantized(t, x, false)) << dtype_name(t);
}

}  // namespace
