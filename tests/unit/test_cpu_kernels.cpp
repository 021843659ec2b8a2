// Every ISA variant of the CPU kernels this machine can run, against the scalar reference
// (quant::vec_dot): all weight types, odd and aligned lengths. Variants differ from the reference only
// in float summation order, so the bound is relative to sum |w_i a_i|.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backends/cpu/isa.h"
#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/repack.h"
#include "backends/cpu/weight_arena.h"
#include "core/dtype.h"
#include "core/fp16.h"
#include "quant/quant.h"

using namespace tern;

namespace {

std::vector<float> gaussian(int64_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                              DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                              DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<cpu::Isa> runnable() {
  std::vector<cpu::Isa> v;
  for (cpu::Isa i : cpu::kAllIsas)
    if (cpu::isa_supported(i)) v.push_back(i);
  return v;
}

TEST(CpuKernels, VecDotMatchesReferenceOnEveryVariant) {
  for (cpu::Isa isa : runnable()) {
    for (DType w : kWeightTypes) {
      const DType at = quant::vec_dot_type(w);
      const int64_t blk = traits(w).block_elems == 1 ? 32 : traits(w).block_elems;
      for (int64_t blocks : {1, 3, 18, 48, 177}) {
        const int64_t n = blk * blocks;
        const auto wf = gaussian(n, static_cast<uint32_t>(blocks), 0.5f), af = gaussian(n, 1000 + static_cast<uint32_t>(blocks), 2.f);
        std::vector<uint8_t> wq(row_bytes(w, n)), aq(row_bytes(at, n));
        quant::quantize_row(w, wf.data(), wq.data(), n);
        quant::quantize_activation_row(at, af.data(), aq.data(), n);
        std::vector<float> wd(static_cast<size_t>(n)), ad(static_cast<size_t>(n));
        quant::dequantize_row(w, wq.data(), wd.data(), n);
        quant::dequantize_row(at, aq.data(), ad.data(), n);
        double magnitude = 0;
        for (int64_t i = 0; i < n; ++i) magnitude += std::fabs(static_cast<double>(wd[i]) * ad[i]);
        const float want = quant::vec_dot(w, wq.data(), aq.data(), n);
        const float got = cpu::vec_dot_for(isa, w)(wq.data(), aq.data(), n);
        EXPECT_NEAR(got, want, 2e-6 * magnitude + 1e-30)
            << cpu::isa_name(isa) << " " << dtype_name(w) << " n=" << n;
      }
    }
  }
}

// A variant that claims a CPU must bring its own kernels for the common decode types, so the test
// above compares two different implementations there; and for those types every variant sums in
// the same (ggml's) order, so they agree to the bit.
TEST(CpuKernels, Avx2ProvidesItsKernelsAndAgreesBitwise) {
  if (!cpu::isa_supported(cpu::Isa::Avx2)) GTEST_SKIP() << "this CPU has no AVX2/FMA/F16C";
  for (DType w : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                  DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::F32, DType::F16, DType::BF16}) {
    const auto slot = static_cast<size_t>(w);
    EXPECT_NE(cpu::kernels(cpu::Isa::Avx2).vec_dot[slot], cpu::kernels(cpu::Isa::Generic).vec_dot[slot]) << dtype_name(w);
    const DType at = quant::vec_dot_type(w);
    for (int64_t n : {256, 768, 1536, 2048}) {
      const auto wf = gaussian(n, 7, 0.5f), af = gaussian(n, 8, 2.f);
      std::vector<uint8_t> wq(row_bytes(w, n)), aq(row_bytes(at, n));
      quant::quantize_row(w, wf.data(), wq.data(), n);
      quant::quantize_activation_row(at, af.data(), aq.data(), n);
      EXPECT_EQ(cpu::vec_dot_for(cpu::Isa::Avx2, w)(wq.data(), aq.data(), n),
                cpu::vec_dot_for(cpu::Isa::Generic, w)(wq.data(), aq.data(), n))
          << dtype_name(w) << " n=" << n;
    }
  }
}

// The variants share one kernel source (the x86 ones differ only in the integer multiply-add, whose
// int32 lanes are identical) or follow its order (generic): every variant present gives the generic
// variant's bits, one token at a time and four at once.
TEST(CpuKernels, EveryVariantAgreesBitwiseWithGeneric) {
  for (cpu::Isa isa : runnable()) {
    for (DType w : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                    DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::F32, DType::F16, DType::BF16}) {
      const auto slot = static_cast<size_t>(w);
      const DType at = quant::vec_dot_type(w);
      for (int64_t n : {256, 768, 2048}) {
        const auto wf = gaussian(n, 17, 0.5f);
        std::vector<uint8_t> wq(row_bytes(w, n)), aq(row_bytes(at, n) * 4);
        quant::quantize_row(w, wf.data(), wq.data(), n);
        for (int t = 0; t < 4; ++t)
          quant::quantize_activation_row(at, gaussian(n, 18 + t, 2.f).data(), aq.data() + t * row_bytes(at, n), n);
        const float want = cpu::vec_dot_for(cpu::Isa::Generic, w)(wq.data(), aq.data(), n);
        EXPECT_EQ(cpu::vec_dot_for(isa, w)(wq.data(), aq.data(), n), want)
            << cpu::isa_name(isa) << " " << dtype_name(w) << " n=" << n;
        if (const auto rows4 = cpu::kernels(isa).vec_dot_rows4[slot]) {
          float out[4];
          rows4(wq.data(), wq.size(), 1, aq.data(), row_bytes(at, n), n, out);
          for (int t = 0; t < 4; ++t)
            EXPECT_EQ(out[t], cpu::vec_dot_for(cpu::Isa::Generic, w)(wq.data(), aq.data() + t * row_bytes(at, n), n))
                << cpu::isa_name(isa) << " " << dtype_name(w) << " n=" << n << " token " << t;
        }
      }
    }
  }
}

// The four-token kernels (prefill) give exactly the single-pair kernels' results, for every variant
// and type that has them, over several weight rows, at strides that are not multiples of anything.
TEST(CpuKernels, FourTokenKernelsEqualSinglePairOnes) {
  for (cpu::Isa isa : runnable()) {
    const cpu::Kernels& k = cpu::kernels(isa);
    for (DType w : kWeightTypes) {
      const auto slot = static_cast<size_t>(w);
      if (!k.vec_dot_rows4[slot]) continue;
      const DType at = quant::vec_dot_type(w);
      const int64_t blk = traits(w).block_elems == 1 ? 32 : traits(w).block_elems;
      for (int64_t blocks : {1, 5, 24}) {
        const int64_t n = blk * blocks, rows = 3;
        const size_t a_stride = row_bytes(at, n) + 7, w_stride = row_bytes(w, n) + 5;
        std::vector<uint8_t> wq(w_stride * rows), aq(a_stride * 4);
        for (int64_t r = 0; r < rows; ++r)
          quant::quantize_row(w, gaussian(n, 3 + static_cast<uint32_t>(r), 0.5f).data(), wq.data() + r * w_stride, n);
        for (int t = 0; t < 4; ++t)
          quant::quantize_activation_row(at, gaussian(n, 10 + t, 2.f).data(), aq.data() + t * a_stride, n);
        std::vector<float> out(rows * 4, NAN);
        k.vec_dot_rows4[slot](wq.data(), w_stride, rows, aq.data(), a_stride, n, out.data());
        for (int64_t r = 0; r < rows; ++r)
          for (int t = 0; t < 4; ++t)
            EXPECT_EQ(out[static_cast<size_t>(r * 4 + t)], k.vec_dot[slot](wq.data() + r * w_stride, aq.data() + t * a_stride, n))
                << cpu::isa_name(isa) << " " << dtype_name(w) << " n=" << n << " row " << r << " token " << t;
      }
    }
  }
}

// The prefill panel GEMM gives exactly the single-pair kernels' results: panels of 1..8 rows, token
// counts with and without a remainder of four, output strides wider than the panel.
TEST(CpuKernels, PanelGemmEqualsSinglePairDots) {
  for (cpu::Isa isa : runnable()) {
    const cpu::Kernels& k = cpu::kernels(isa);
    for (DType w : kWeightTypes) {
      const auto slot = static_cast<size_t>(w);
      if (!k.gemm_panel[slot]) continue;
      const DType at = quant::vec_dot_type(w);
      for (int64_t rows : {1, 5, 8})
        for (int64_t n_tok : {4, 7}) {
          const int64_t n = traits(w).block_elems * 19;
          const size_t a_stride = row_bytes(at, n) + 3, w_stride = row_bytes(w, n) + 1, y_stride = 11;
          std::vector<uint8_t> wq(w_stride * rows), aq(a_stride * n_tok);
          for (int64_t r = 0; r < rows; ++r)
            quant::quantize_row(w, gaussian(n, 40 + static_cast<uint32_t>(r), 0.5f).data(), wq.data() + r * w_stride, n);
          for (int64_t t = 0; t < n_tok; ++t)
            quant::quantize_activation_row(at, gaussian(n, 60 + static_cast<uint32_t>(t), 2.f).data(), aq.data() + t * a_stride, n);
          std::vector<float> y(y_stride * n_tok, NAN);
          std::vector<float> prep(static_cast<size_t>(n / traits(w).block_elems * k.gemm_prep_per_block[slot] * n_tok));
          k.gemm_prepare[slot](aq.data(), a_stride, n_tok, n, prep.data());
          k.gemm_panel[slot](wq.data(), w_stride, rows, aq.data(), a_stride, prep.data(), n_tok, n, y.data(), y_stride);
          for (int64_t t = 0; t < n_tok; ++t)
            for (size_t r = 0; r < y_stride; ++r) {
              const float got = y[t * y_stride + r];
              if (static_cast<int64_t>(r) >= rows) {
                EXPECT_TRUE(std::isnan(got)) << "wrote outside the panel at row " << r;
                continue;
              }
              EXPECT_EQ(got, k.vec_dot[slot](wq.data() + r * w_stride, aq.data() + t * a_stride, n))
                  << cpu::isa_name(isa) << " " << dtype_name(w) << " rows=" << rows << " r=" << r << " t=" << t;
            }
        }
    }
  }
}

// The plain types' many-pair kernels (F32, F16, BF16), fed the activation rows widened to f32, give
// exactly the single-pair kernel's result on the unwidened rows for every (row, token): tiles cut
// short in rows and tokens, lengths with a tail of one to seven elements, strides that are not
// multiples of anything, and nothing written outside the rows asked for.
TEST(CpuKernels, PlainGemmRowsEqualSinglePairDots) {
  int checked = 0;
  for (cpu::Isa isa : runnable()) {
    const cpu::Kernels& k = cpu::kernels(isa);
    for (DType w : {DType::F32, DType::F16, DType::BF16}) {
      const auto slot = static_cast<size_t>(w);
      if (!k.gemm_rows[slot]) continue;
      const DType at = quant::vec_dot_type(w);
      // 8197 wide, 100 tokens: a prefill in blocks of tokens (plain_token_block), the last one short.
      for (int64_t n : {8, 77, 576, 8197})
        for (int64_t rows : {1, 3, 16, 17, 35})
          for (int64_t n_tok : n == 8197 ? std::vector<int64_t>{100} : std::vector<int64_t>{1, 2, 5, 8, 9, 13, 16, 21}) {
            const size_t extra = n == 77 ? 6 : 0;  // rows 6 bytes apart from a float boundary
            const size_t a_stride = row_bytes(at, n) + extra, w_stride = row_bytes(w, n) + 2 + extra;
            const size_t y_stride = static_cast<size_t>(rows) + 3, af_stride = static_cast<size_t>(n) + 3;
            std::vector<uint8_t> wq(w_stride * rows), aq(a_stride * n_tok);
            std::vector<float> af(af_stride * n_tok, NAN);
            for (int64_t r = 0; r < rows; ++r)
              quant::quantize_row(w, gaussian(n, 80 + static_cast<uint32_t>(r), 0.5f).data(), wq.data() + r * w_stride, n);
            for (int64_t t = 0; t < n_tok; ++t) {
              quant::quantize_activation_row(at, gaussian(n, 120 + static_cast<uint32_t>(t), 2.f).data(),
                                             aq.data() + t * a_stride, n);
              quant::dequantize_row(at, aq.data() + t * a_stride, af.data() + t * af_stride, n);
            }
            std::vector<float> y(y_stride * n_tok, NAN);
            k.gemm_rows[slot](wq.data(), w_stride, rows, af.data(), af_stride, n_tok, n, y.data(), y_stride);
            for (int64_t t = 0; t < n_tok; ++t)
              for (size_t r = 0; r < y_stride; ++r) {
                const float got = y[t * y_stride + r];
                if (static_cast<int64_t>(r) >= rows) {
                  EXPECT_TRUE(std::isnan(got)) << "wrote outside the rows at row " << r << " token " << t;
                  continue;
                }
                ASSERT_EQ(got, cpu::vec_dot_for(cpu::Isa::Generic, w)(wq.data() + r * w_stride, aq.data() + t * a_stride, n))
                    << cpu::isa_name(isa) << " " << dtype_name(w) << " n=" << n << " rows=" << rows
                    << " n_tok=" << n_tok << " r=" << r << " t=" << t;
              }
            ++checked;
          }
    }
  }
  if (checked == 0) GTEST_SKIP() << "no variant on this CPU has the plain-type GEMM";
}

// SIMD activation quantisation writes exactly the reference's bytes, ties and all-zero blocks
// included.
TEST(CpuKernels, ActivationQuantisationMatchesReference) {
  for (cpu::Isa isa : runnable()) {
    for (DType at : {DType::Q8_0, DType::Q8_1, DType::Q8_K, DType::F16}) {
      const cpu::QuantizeActFn q = cpu::kernels(isa).quantize_act[static_cast<size_t>(at)];
      if (!q) continue;
      const int64_t blk = at == DType::Q8_K ? 256 : 32;
      const int64_t n = blk * 9 + (at == DType::F16 ? 5 : 0);  // F16 rows need not be whole blocks
      auto x = gaussian(n, 77, 3.f);
      for (int64_t i = 0; i < blk; ++i) x[static_cast<size_t>(blk + i)] = 0.0f;                  // an all-zero block
      for (int64_t i = 0; i < 32; ++i) x[static_cast<size_t>(2 * blk + i)] = i == 0 ? 127.f : 0.5f * i;  // ties at id = 1
      if (at == DType::Q8_K) {  // two elements of the largest magnitude: the first one's sign sets the scale
        x[static_cast<size_t>(3 * blk + 7)] = -40.f;
        x[static_cast<size_t>(3 * blk + 200)] = 40.f;
      }
      std::vector<uint8_t> want(row_bytes(at, n)), got(row_bytes(at, n), 0xAB);
      quant::quantize_activation_row(at, x.data(), want.data(), n);
      q(x.data(), got.data(), n);
      EXPECT_EQ(got, want) << cpu::isa_name(isa) << " " << dtype_name(at);
    }
  }
}

// Q4_0 and Q4_1 repacked in groups of eight rows: the way back gives the file's bytes, and the
// grouped decode kernel agrees bitwise across variants and with the row-major dot up to summation
// order; the GEMM equals the GEMV per token, bit for bit.
struct FourBitGroups {
  DType type, act;
  void (*repack)(const uint8_t*, size_t, int64_t, int64_t, uint8_t*);
  void (*unpack)(const uint8_t*, int64_t, uint8_t*, size_t);
  cpu::GemvX8Fn cpu::Kernels::*gemv;
  cpu::GemmX8Fn cpu::Kernels::*gemm;
};
class CpuKernelsFourBitGroups : public ::testing::TestWithParam<FourBitGroups> {};

TEST_P(CpuKernelsFourBitGroups, RoundTripAndDot) {
  const FourBitGroups& f = GetParam();
  const int64_t n = 32 * 21, rows = 24;  // three groups: the 512-bit pair kernels and their odd tail
  const size_t rb = row_bytes(f.type, n);
  std::vector<uint8_t> wq(rb * rows), packed(rb * rows), back(rb * 8);
  for (int64_t r = 0; r < rows; ++r)
    quant::quantize_row(f.type, gaussian(n, 90 + static_cast<uint32_t>(r), 0.5f).data(), wq.data() + r * rb, n);
  f.repack(wq.data(), rb, rows, n, packed.data());
  for (int64_t g = 0; g < rows / 8; ++g) {
    f.unpack(packed.data() + g * rb * 8, n, back.data(), rb);
    EXPECT_EQ(0, std::memcmp(back.data(), wq.data() + g * rb * 8, rb * 8)) << "group " << g;
  }
  const cpu::Kernels& generic = cpu::kernels(cpu::Isa::Generic);
  std::vector<uint8_t> aq(row_bytes(f.act, n));
  quant::quantize_activation_row(f.act, gaussian(n, 5, 2.f).data(), aq.data(), n);
  std::vector<float> want(rows, NAN);
  (generic.*f.gemv)(packed.data(), rb * 8, rows / 8, aq.data(), n, want.data());
  for (int64_t r = 0; r < rows; ++r) {
    const float dot = quant::vec_dot(f.type, wq.data() + r * rb, aq.data(), n);
    EXPECT_NEAR(want[static_cast<size_t>(r)], dot, 1e-5f * (1 + std::fabs(dot))) << "row " << r;
  }
  for (cpu::Isa isa : runnable()) {
    std::vector<float> got(rows, NAN);
    (cpu::kernels(isa).*f.gemv)(packed.data(), rb * 8, rows / 8, aq.data(), n, got.data());
    EXPECT_EQ(got, want) << cpu::isa_name(isa);
  }
  // The GEMM, for 13 tokens (tiles of eight and four and a remainder), equals the GEMV per token.
  const int64_t n_tok = 13;
  const size_t a_stride = aq.size() + 5, y_stride = rows + 3;
  std::vector<uint8_t> at(a_stride * n_tok);
  for (int64_t t = 0; t < n_tok; ++t)
    quant::quantize_activation_row(f.act, gaussian(n, 300 + static_cast<uint32_t>(t), 2.f).data(), at.data() + t * a_stride, n);
  for (cpu::Isa isa : runnable()) {
    std::vector<float> y(y_stride * n_tok, NAN), one(rows);
    (cpu::kernels(isa).*f.gemm)(packed.data(), rb * 8, rows / 8, at.data(), a_stride, n_tok, n, y.data(), y_stride);
    for (int64_t t = 0; t < n_tok; ++t) {
      (generic.*f.gemv)(packed.data(), rb * 8, rows / 8, at.data() + t * a_stride, n, one.data());
      for (int64_t r = 0; r < rows; ++r)
        EXPECT_EQ(y[static_cast<size_t>(t) * y_stride + static_cast<size_t>(r)], one[static_cast<size_t>(r)])
            << cpu::isa_name(isa) << " token " << t << " row " << r;
      EXPECT_TRUE(std::isnan(y[static_cast<size_t>(t) * y_stride + rows])) << "wrote past the rows";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Types, CpuKernelsFourBitGroups,
    ::testing::Values(FourBitGroups{DType::Q4_0, DType::Q8_0, cpu::repack_q4_0_x8, cpu::unpack_q4_0_x8,
                                    &cpu::Kernels::gemv_q4_0_x8, &cpu::Kernels::gemm_q4_0_x8},
                      FourBitGroups{DType::Q4_1, DType::Q8_1, cpu::repack_q4_1_x8, cpu::unpack_q4_1_x8,
                                    &cpu::Kernels::gemv_q4_1_x8, &cpu::Kernels::gemm_q4_1_x8}),
    [](const auto& info) { return std::string(dtype_name(info.param.type)); });

TEST(CpuKernels, Q8_0GroupsOfEightRoundTripAndDot) {
  const int64_t n = 32 * 7, rows = 24, n_tok = 13;
  const size_t rb = row_bytes(DType::Q8_0, n), gb = rb * 8;
  std::vector<uint8_t> wq(rb * rows), packed(rb * rows), back(rb * 8);
  for (int64_t r = 0; r < rows; ++r)
    quant::quantize_row(DType::Q8_0, gaussian(n, 590 + static_cast<uint32_t>(r), 0.5f).data(), wq.data() + r * rb, n);
  cpu::repack_q8_0_x8(wq.data(), rb, rows, n, packed.data());
  for (int64_t g = 0; g < rows / 8; ++g) {
    cpu::unpack_q8_0_x8(packed.data() + g * gb, n, back.data(), rb);
    EXPECT_EQ(0, std::memcmp(back.data(), wq.data() + g * gb, gb)) << "group " << g;
  }
  const size_t a_stride = rb + 3, y_stride = rows + 2;
  std::vector<uint8_t> at(a_stride * n_tok);
  for (int64_t t = 0; t < n_tok; ++t)
    quant::quantize_activation_row(DType::Q8_0, gaussian(n, 600 + static_cast<uint32_t>(t), 2.f).data(), at.data() + t * a_stride, n);
  for (int64_t t = 0; t < n_tok; ++t) {
    std::vector<float> want(rows);
    cpu::kernels(cpu::Isa::Generic).gemv_q8_0_x8(packed.data(), gb, rows / 8, at.data() + t * a_stride, n, want.data());
    for (int64_t r = 0; r < rows; ++r) {
      const float dot = quant::vec_dot(DType::Q8_0, wq.data() + r * rb, at.data() + t * a_stride, n);
      EXPECT_NEAR(want[static_cast<size_t>(r)], dot, 1e-5f * (1 + std::fabs(dot))) << "row " << r;
    }
    for (cpu::Isa isa : runnable()) {
      std::vector<float> got(rows, NAN), y(y_stride * n_tok, NAN);
      cpu::kernels(isa).gemv_q8_0_x8(packed.data(), gb, rows / 8, at.data() + t * a_stride, n, got.data());
      EXPECT_EQ(got, want) << cpu::isa_name(isa);
      cpu::kernels(isa).gemm_q8_0_x8(packed.data(), gb, rows / 8, at.data(), a_stride, n_tok, n, y.data(), y_stride);
      for (int64_t r = 0; r < rows; ++r)
        EXPECT_EQ(y[static_cast<size_t>(t) * y_stride + static_cast<size_t>(r)], want[static_cast<size_t>(r)])
            << cpu::isa_name(isa) << " token " << t << " row " << r;
    }
  }
}

// The K-quant grouped layouts (repack.h): the repack round-trips; the generic GEMV agrees with the
// scalar dot product; every variant's GEMV and GEMM (13 tokens: tiles and every remainder) give the
// generic GEMV's bits.
struct KQuantGroups {
  DType type;
  int64_t block;  // bytes of one super-block of a group
  void (*repack)(const uint8_t*, size_t, int64_t, int64_t, uint8_t*);
  void (*unpack)(const uint8_t*, int64_t, uint8_t*, size_t);
  cpu::GemvX8Fn cpu::Kernels::*gemv;
  cpu::GemmX8Fn cpu::Kernels::*gemm;
};
class CpuKernelsKQuantGroups : public ::testing::TestWithParam<KQuantGroups> {};

TEST_P(CpuKernelsKQuantGroups, RoundTripAndDot) {
  const KQuantGroups& f = GetParam();
  const int64_t n = 256 * 3, rows = 40;  // five groups: the 512-bit kernels' pairs and an odd one
  const size_t rb = row_bytes(f.type, n), gb = static_cast<size_t>(n / 256 * f.block);
  std::vector<uint8_t> wq(rb * rows), packed(gb * rows / 8), back(rb * 8);
  for (int64_t r = 0; r < rows; ++r)
    quant::quantize_row(f.type, gaussian(n, 190 + static_cast<uint32_t>(r), 0.5f).data(), wq.data() + r * rb, n);
  f.repack(wq.data(), rb, rows, n, packed.data());
  for (int64_t g = 0; g < rows / 8; ++g) {
    f.unpack(packed.data() + g * gb, n, back.data(), rb);
    EXPECT_EQ(0, std::memcmp(back.data(), wq.data() + g * rb * 8, rb * 8)) << "group " << g;
  }
  const cpu::Kernels& generic = cpu::kernels(cpu::Isa::Generic);
  std::vector<uint8_t> aq(row_bytes(DType::Q8_K, n));
  quant::quantize_activation_row(DType::Q8_K, gaussian(n, 6, 2.f).data(), aq.data(), n);
  std::vector<float> want(rows, NAN);
  (generic.*f.gemv)(packed.data(), gb, rows / 8, aq.data(), n, want.data());
  for (int64_t r = 0; r < rows; ++r) {
    const float dot = quant::vec_dot(f.type, wq.data() + r * rb, aq.data(), n);
    EXPECT_NEAR(want[static_cast<size_t>(r)], dot, 1e-5f * (1 + std::fabs(dot))) << "row " << r;
  }
  for (cpu::Isa isa : runnable()) {
    std::vector<float> got(rows, NAN);
    (cpu::kernels(isa).*f.gemv)(packed.data(), gb, rows / 8, aq.data(), n, got.data());
    EXPECT_EQ(got, want) << cpu::isa_name(isa);
  }
  const int64_t n_tok = 13;
  const size_t a_stride = aq.size() + 3, y_stride = rows + 1;
  std::vector<uint8_t> at(a_stride * n_tok);
  for (int64_t t = 0; t < n_tok; ++t)
    quant::quantize_activation_row(DType::Q8_K, gaussian(n, 400 + static_cast<uint32_t>(t), 2.f).data(), at.data() + t * a_stride, n);
  for (cpu::Isa isa : runnable())
    for (int64_t tokens = 1; tokens <= n_tok; ++tokens) {
      std::vector<float> y(y_stride * n_tok, NAN), one(rows);
      (cpu::kernels(isa).*f.gemm)(packed.data(), gb, rows / 8, at.data(), a_stride, tokens, n, y.data(), y_stride);
      for (int64_t t = 0; t < n_tok; ++t) {
        const float* yt = y.data() + static_cast<size_t>(t) * y_stride;
        if (t >= tokens) {
          EXPECT_TRUE(std::isnan(yt[0])) << "wrote token " << t << " of " << tokens;
          continue;
        }
        (generic.*f.gemv)(packed.data(), gb, rows / 8, at.data() + t * a_stride, n, one.data());
        for (int64_t r = 0; r < rows; ++r)
          EXPECT_EQ(yt[r], one[static_cast<size_t>(r)]) << cpu::isa_name(isa) << " " << tokens << " tokens, token " << t
                                                        << " row " << r;
        EXPECT_TRUE(std::isnan(yt[rows])) << "wrote past the rows";
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Types, CpuKernelsKQuantGroups,
                         ::testing::Values(KQuantGroups{DType::Q2_K, cpu::kQ2_Kx8Block, cpu::repack_q2_k_x8,
                                                        cpu::unpack_q2_k_x8, &cpu::Kernels::gemv_q2_k_x8,
                                                        &cpu::Kernels::gemm_q2_k_x8},
                                           KQuantGroups{DType::Q3_K, cpu::kQ3_Kx8Block, cpu::repack_q3_k_x8,
                                                        cpu::unpack_q3_k_x8, &cpu::Kernels::gemv_q3_k_x8,
                                                        &cpu::Kernels::gemm_q3_k_x8},
                                           KQuantGroups{DType::Q4_K, cpu::kQ4_Kx8Block, cpu::repack_q4_k_x8,
                                                        cpu::unpack_q4_k_x8, &cpu::Kernels::gemv_q4_k_x8,
                                                        &cpu::Kernels::gemm_q4_k_x8},
                                           KQuantGroups{DType::Q5_K, cpu::kQ5_Kx8Block, cpu::repack_q5_k_x8,
                                                        cpu::unpack_q5_k_x8, &cpu::Kernels::gemv_q5_k_x8,
                                                        &cpu::Kernels::gemm_q5_k_x8},
                                           KQuantGroups{DType::Q6_K, cpu::kQ6_Kx8Block, cpu::repack_q6_k_x8,
                                                        cpu::unpack_q6_k_x8, &cpu::Kernels::gemv_q6_k_x8,
                                                        &cpu::Kernels::gemm_q6_k_x8}),
                         [](const auto& info) { return std::string(dtype_name(info.param.type)); });

// The softmax exponential: every variant gives the generic bits, within 3e-7 relative of std::exp
// over the range softmax uses, and exactly 0 at -inf and below the underflow threshold.
TEST(CpuKernels, SoftmaxExpAgreesAcrossVariantsAndWithLibm) {
  std::vector<float> x;
  for (float v = -100.0f; v <= 0.0f; v += 0.0137f) x.push_back(v);
  x.push_back(-INFINITY);
  x.push_back(0.0f);
  const float m = 0.25f;
  std::vector<float> want = x;
  const float want_sum = cpu::kernels(cpu::Isa::Generic).exp_sub_sum(want.data(), static_cast<int64_t>(want.size()), m);
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = std::exp(static_cast<double>(x[i] - m));
    EXPECT_NEAR(want[i], e, 3e-7 * e + (x[i] - m < -87.0f ? 1e-37 : 0.0)) << "x = " << x[i];
  }
  EXPECT_EQ(want[x.size() - 2], 0.0f);
  for (cpu::Isa isa : runnable()) {
    std::vector<float> got = x;
    EXPECT_EQ(cpu::kernels(isa).exp_sub_sum(got.data(), static_cast<int64_t>(got.size()), m), want_sum) << cpu::isa_name(isa);
    EXPECT_EQ(got, want) << cpu::isa_name(isa);
    std::vector<double> r1(x.size()), r2(x.size());
    const auto q = gaussian(static_cast<int64_t>(x.size()), 9, 5.f);
    cpu::kernels(isa).round_f16(q.data(), r1.data(), static_cast<int64_t>(q.size()));
    cpu::kernels(cpu::Isa::Generic).round_f16(q.data(), r2.data(), static_cast<int64_t>(q.size()));
    EXPECT_EQ(r1, r2) << cpu::isa_name(isa);
    std::vector<uint16_t> h1(q.size()), h2(q.size());
    cpu::kernels(isa).f32_to_f16(q.data(), h1.data(), static_cast<int64_t>(q.size()));
    cpu::kernels(cpu::Isa::Generic).f32_to_f16(q.data(), h2.data(), static_cast<int64_t>(q.size()));
    EXPECT_EQ(h1, h2) << cpu::isa_name(isa);
    // SwiGLU over gates from -100 to 100 (exp overflowing at one end, vanishing at the other).
    std::vector<float> g(x.size()), sw1(x.size()), sw2(x.size());
    for (size_t i = 0; i < g.size(); ++i) g[i] = -2.0f * x[i] - 100.0f + (x[i] == -INFINITY ? INFINITY : 0.0f);
    g.back() = 95.0f;
    cpu::kernels(isa).swiglu(g.data(), q.data(), sw1.data(), static_cast<int64_t>(g.size()));
    cpu::kernels(cpu::Isa::Generic).swiglu(g.data(), q.data(), sw2.data(), static_cast<int64_t>(g.size()));
    EXPECT_EQ(sw1, sw2) << cpu::isa_name(isa);
  }
}

TEST(CpuKernels, SelectedIsaIsRunnable) { EXPECT_TRUE(cpu::isa_supported(cpu::selected_isa())); }

}  // namespace

// An attention chunk's rows (cpu::KvRows) over n_pos rows of d floats, f32 in place or as f16.
struct ChunkRows {
  std::vector<uint16_t> half;
  std::vector<const void*> ptr;
  ChunkRows(const std::vector<float>& x, int64_t n_pos, int64_t d, bool f16) {
    if (f16) {
      half.resize(x.size());
      for (size_t i = 0; i < x.size(); ++i) half[i] = f32_to_fp16(x[i]);
    }
    for (int64_t p = 0; p < n_pos; ++p)
      ptr.push_back(f16 ? static_cast<const void*>(&half[static_cast<size_t>(p * d)]) : &x[static_cast<size_t>(p * d)]);
  }
  cpu::KvRows rows() const { return {ptr.data(), !half.empty()}; }
};

// Attention scores: every variant gives the generic kernel's bits (the sums are exact, so any
// order agrees), over odd row and position counts that leave remainders in every blocking; keys
// read as f16 rows give the bits of the same keys widened to f32 rows.
TEST(CpuKernels, AttentionScoresMatchGeneric) {
  for (const int64_t d : {64, 128, 40}) {
    const int64_t n_rows = 7, n_pos = 29, ld = 32;
    std::vector<double> q(static_cast<size_t>(n_rows * d));
    const auto qf = gaussian(n_rows * d, 900 + static_cast<uint32_t>(d), 2.f);
    cpu::kernels(cpu::Isa::Generic).round_f16(qf.data(), q.data(), n_rows * d);
    std::vector<float> k = gaussian(n_pos * d, 901, 2.f);
    for (float& v : k) v = fp16_to_f32(f32_to_fp16(v));  // keys come from an f16 cache
    std::vector<float> want(static_cast<size_t>(n_rows * ld), -1.f);
    const ChunkRows k32(k, n_pos, d, false), k16(k, n_pos, d, true);
    cpu::kernels(cpu::Isa::Generic).scores(q.data(), n_rows, k32.rows(), n_pos, d, 0.125f, want.data(), ld);
    for (cpu::Isa isa : runnable())
      for (const ChunkRows* rows : {&k32, &k16}) {
        std::vector<float> got(static_cast<size_t>(n_rows * ld), -1.f);
        cpu::kernels(isa).scores(q.data(), n_rows, rows->rows(), n_pos, d, 0.125f, got.data(), ld);
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << cpu::isa_name(isa) << " d=" << d << (rows == &k16 ? " f16" : " f32");
      }
  }
}

// Softmax weights times values: every variant gives the generic kernel's bits (per element the
// positions in order, one FMA each, zero weights skipped), for row counts around the 512-bit
// kernel's groups of rows, head sizes with and without their own path, f32 and f16 rows.
TEST(CpuKernels, AttentionWeightedValuesMatchGeneric) {
  for (const int64_t d : {64, 128, 40, 96}) {
    for (const int64_t n_rows : {1, 3, 4, 9}) {
      const int64_t n_pos = 29, ld = 32;
      std::vector<float> w = gaussian(n_rows * ld, 910 + static_cast<uint32_t>(d), 1.f);
      for (int64_t i = 0; i < n_rows; ++i) w[static_cast<size_t>(i * ld + (i * 7) % n_pos)] = 0.0f;  // skipped
      const std::vector<float> v = gaussian(n_pos * d, 911, 2.f), acc0 = gaussian(n_rows * d, 912, 1.f);
      for (const bool f16 : {false, true}) {
        const ChunkRows rows(v, n_pos, d, f16);
        std::vector<float> want = acc0;
        cpu::kernels(cpu::Isa::Generic).weighted_values(w.data(), n_rows, ld, rows.rows(), n_pos, d, want.data());
        for (cpu::Isa isa : runnable()) {
          std::vector<float> got = acc0;
          cpu::kernels(isa).weighted_values(w.data(), n_rows, ld, rows.rows(), n_pos, d, got.data());
          EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
              << cpu::isa_name(isa) << " d=" << d << " rows=" << n_rows << (f16 ? " f16" : " f32");
        }
      }
    }
  }
}

// The repacked weights' arena: aligned, disjoint allocations that keep what was written, small ones
// packed into one chunk, one larger than a chunk on a chunk of its own.
TEST(CpuWeightArena, AllocationsAreAlignedDisjointAndKeepTheirBytes) {
  cpu::WeightArena arena;
  const size_t sizes[] = {1, 100, 294912, 64, 4096 + 3, cpu::WeightArena::kChunkBytes + 12345, 7};
  std::vector<std::pair<uint8_t*, size_t>> got;
  for (size_t i = 0; i < std::size(sizes); ++i) {
    auto* p = static_cast<uint8_t*>(arena.allocate(sizes[i]));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % cpu::WeightArena::kAlign, 0u) << "allocation " << i;
    std::memset(p, static_cast<int>(i + 1), sizes[i]);
    got.emplace_back(p, sizes[i]);
  }
  for (size_t i = 0; i < got.size(); ++i) {
    for (size_t j = i + 1; j < got.size(); ++j) {
      const bool apart = got[i].first + got[i].second <= got[j].first || got[j].first + got[j].second <= got[i].first;
      EXPECT_TRUE(apart) << "allocations " << i << " and " << j << " overlap";
    }
    for (size_t k = 0; k < got[i].second; k += 997) ASSERT_EQ(got[i].first[k], i + 1) << "allocation " << i;
    EXPECT_EQ(got[i].first[got[i].second - 1], i + 1) << "allocation " << i;
  }
  // The first five fit one chunk; the large one takes a chunk of its size rounded to huge pages,
  // and the last fits that chunk's tail: the arena never places an allocation across two chunks.
  const size_t chunk = cpu::WeightArena::kChunkBytes, huge = cpu::WeightArena::kHugePage;
  EXPECT_EQ(arena.reserved_bytes(), chunk + (sizes[5] + huge - 1) / huge * huge);
  EXPECT_GE(got[6].first, got[5].first + got[5].second);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(got[0].first) % huge, 0u) << "chunks start on a 2 MiB boundary";
}
