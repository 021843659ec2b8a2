// Every op on every backend against the scalar reference (src/ops/ref): random inputs at odd and
// aligned sizes, every weight type, sentinel floats around each output to catch out-of-bounds writes.
#include <gtest/gtest.h>

#include <cstring>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string_view>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cuda/cuda_backend.h"
#include "core/error.h"
#include "core/top_k.h"
#include "host_adapter.h"
#include "core/fp16.h"
#include "ops/ref/ref_ops.h"
#include "quant/quant.h"

using namespace tern;

namespace {

constexpr float kSentinel = -12345.678f;
constexpr int kGuard = 16;

// A float buffer with guard zones on both sides.
struct Guarded {
  std::vector<float> buf;
  size_t n;
  explicit Guarded(size_t n_) : buf(n_ + 2 * kGuard, kSentinel), n(n_) {
    std::fill(buf.begin() + kGuard, buf.begin() + kGuard + n, std::nanf(""));  // poisoned output
  }
  float* data() { return buf.data() + kGuard; }
  bool guards_intact() const {
    for (int i = 0; i < kGuard; ++i)
      if (buf[i] != kSentinel || buf[kGuard + n + i] != kSentinel) return false;
    return true;
  }
};

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Normalised mean squared error, as llama.cpp's test-backend-ops measures it.
double nmse(const float* a, const float* b, size_t n) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < n; ++i) {
    err += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    ref += static_cast<double>(b[i]) * b[i];
  }
  return ref == 0 ? err : err / ref;
}

// A backend with what the tests may expect of it.
struct BackendUnderTest {
  std::unique_ptr<Backend> be;
  // Computes matmuls with f32 (or f16 tensor-core) activations: compare with the exact reference,
  // not the peer's 8-bit rounding.
  bool exact = false;
  // Looser NMSE bounds where the backend rounds operands to f16 on purpose (tensor-core attention,
  // cuBLAS f16 GEMMs); 0 keeps each test's own bound.
  double matmul_nmse = 0, attention_nmse = 0;
  // Gives a token the same bits whatever else is in the batch (the CPU backend; see DESIGN.md).
  bool batch_invariant = true;
  Backend* operator->() const { return be.get(); }
  Backend& operator*() const { return *be; }
};

// Every ISA variant this CPU runs, with one thread and with more threads than rows in some cases;
// and where a GPU is present, the CUDA backend with its default paths and with every token through
// the tensor-core paths (cuBLAS GEMMs, FlashAttention tiles).
// TERN_TEST_CUDA_ONLY=1 leaves the CPU backends out (the CUDA emulator under ThreadSanitizer, where
// they would take most of the time).
std::vector<BackendUnderTest> backends_under_test() {
  std::vector<BackendUnderTest> v;
  static const bool cuda_only = [] {
    const char* e = std::getenv("TERN_TEST_CUDA_ONLY");
    return e && std::string_view(e) == "1";
  }();
  for (cpu::Isa isa : cpu::kAllIsas) {
    if (!cpu::isa_supported(isa) || cuda_only) continue;
    v.push_back({make_cpu_backend({.n_threads = 1, .isa = isa})});
    v.push_back({make_cpu_backend({.n_threads = 3, .isa = isa})});
  }
  if (cuda_unavailable_reason().empty()) {
    // Decode-sized matmuls round their input as the CPU does (8-bit blocks, f16): the peer's reference.
    v.push_back({std::make_unique<tern::testing::HostAdapter>(make_cuda_backend({}), "cuda"), false, 0, 1e-5, false});
    v.push_back({std::make_unique<tern::testing::HostAdapter>(
                     make_cuda_backend({.flash_min_tokens = 1, .gemm_min_tokens = 1}), "cuda-tensor-cores"),
                 true, 1e-5, 1e-5, false});
  }
  return v;
}

double bound(double test_bound, double backend_bound) { return std::max(test_bound, backend_bound); }

TEST(Ops, CudaBackendPresentOrSkipped) {
  const std::string why = cuda_unavailable_reason();
#if TERN_CUDA_BUILT
  // A CUDA build must at least load its backend module; only the device may be missing.
  EXPECT_EQ(why.find("cannot load"), std::string::npos) << why;
  EXPECT_EQ(why.find("another build"), std::string::npos) << why;
#endif
  if (!why.empty()) GTEST_SKIP() << "CUDA op tests skipped: " << why;
  SUCCEED();
}

// Quantises a random [n_in, n_out] weight into type t.
std::vector<uint8_t> random_weight(DType t, int64_t n_in, int64_t n_out, uint32_t seed) {
  const auto f = random_floats(static_cast<size_t>(n_in * n_out), seed, 0.5f);
  std::vector<uint8_t> w(row_bytes(t, n_in) * n_out);
  for (int64_t j = 0; j < n_out; ++j) quant::quantize_row(t, f.data() + j * n_in, w.data() + j * row_bytes(t, n_in), n_in);
  return w;
}

}  // namespace

struct MatmulCase {
  DType type;
  int64_t n_in, n_out, n_tok;
};
void PrintTo(const MatmulCase& c, std::ostream* os) {
  *os << dtype_name(c.type) << " " << c.n_in << "x" << c.n_out << " tokens " << c.n_tok;
}

class MatmulTest : public ::testing::TestWithParam<MatmulCase> {};

TEST_P(MatmulTest, MatchesReference) {
  const auto c = GetParam();
  auto w = random_weight(c.type, c.n_in, c.n_out, 7);
  const auto wv = TensorView::contiguous(w.data(), c.type, {c.n_in, c.n_out});
  auto x = random_floats(static_cast<size_t>(c.n_in * c.n_tok), 11);
  const auto xv = TensorView::contiguous(x.data(), DType::F32, {c.n_in, c.n_tok});
  Guarded expect(c.n_out * c.n_tok), expect_exact(c.n_out * c.n_tok);
  ref::matmul(wv, xv, TensorView::contiguous(expect.data(), DType::F32, {c.n_out, c.n_tok}));
  ref::matmul(wv, xv, TensorView::contiguous(expect_exact.data(), DType::F32, {c.n_out, c.n_tok}), true);
  // The reference accumulates in double; fast paths in float. NMSE bound per accumulation type.
  for (auto& be : backends_under_test()) {
    // As loaded from a file (the file's layout) and as the backend prepares matmul weights (repacked
    // where it chooses to).
    for (const TensorView& weight : {wv, be->prepare_weight(wv)}) {
      Guarded got(c.n_out * c.n_tok);
      be->matmul(weight, xv, TensorView::contiguous(got.data(), DType::F32, {c.n_out, c.n_tok}));
      EXPECT_TRUE(got.guards_intact()) << be->name();
      // bf16 operands keep 8 bits of mantissa against f16's 11: a bound ten times looser.
      const double backend_bound = be.matmul_nmse * (c.type == DType::BF16 ? 10 : 1);
      EXPECT_LT(nmse(got.data(), (be.exact ? expect_exact : expect).data(), got.n), bound(1e-10, backend_bound))
          << be->name() << " " << dtype_name(c.type) << " layout " << int{weight.layout};
    }
  }
}

std::vector<MatmulCase> matmul_cases() {
  std::vector<MatmulCase> v;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0}) {
    v.push_back({t, 64, 7, 1});
    v.push_back({t, 96, 33, 5});
  }
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    v.push_back({t, 256, 5, 1});
    v.push_back({t, 512, 17, 3});
  }
  // Whole groups of eight rows (the CPU backend repacks these weights): decode, a few tokens, and prefill with
  // a remainder; three groups (the 512-bit kernels' pair and an odd one).
  for (int64_t n_tok : {1, 2, 9}) v.push_back({DType::Q4_0, 96, 24, n_tok});
  for (int64_t n_tok : {1, 7}) v.push_back({DType::Q8_0, 64, 16, n_tok});
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    for (int64_t n_tok : {1, 6, 11}) v.push_back({t, 512, 24, n_tok});
  for (int64_t n_tok : {1, 3, 9}) v.push_back({DType::Q4_1, 96, 24, n_tok});
  // Thousands of rows: more GEMV blocks than a GPU holds at once (several waves).
  v.push_back({DType::Q4_0, 64, 5003, 1});
  v.push_back({DType::Q8_0, 96, 4099, 3});
  v.push_back({DType::Q4_1, 64, 4501, 9});
  // Rows whose units and scales are whole 16-byte pieces (the CUDA backend streams these through
  // shared memory):
  // several row pairs per warp (thousands of rows: more pairs than a GPU's grid has warps), also
  // with rows of 1.5 chunks of 32 units; a row in 5.5 chunks, in two exactly, a chunk half empty;
  // batches of 1 to 9 tokens.
  v.push_back({DType::Q4_0, 512, 9001, 1});
  v.push_back({DType::Q4_1, 1536, 6001, 3});
  v.push_back({DType::Q8_0, 5632, 67, 9});
  v.push_back({DType::BF16, 2048, 130, 2});
  v.push_back({DType::F16, 768, 6001, 1});
  // Q4_K/Q5_K stream as whole super-blocks, four per chunk: 1.25 chunks per row over many row
  // pairs; one chunk exactly, an odd row, two token tiles.
  v.push_back({DType::Q4_K, 1280, 4501, 2});
  v.push_back({DType::Q5_K, 1024, 301, 9});
  v.push_back({DType::F32, 3, 2, 2});  // sizes smaller than any vector width
  v.push_back({DType::F32, 13, 9, 7});
  return v;
}

// A token's output row does not depend on the other tokens of the batch, bit for bit: speculative
// decoding verifies k tokens in one pass and must get what k single-token passes give; continuous
// batching must not change a request's tokens. Every weight type, as loaded and as prepared.
TEST(Ops, MatmulIsBatchInvariant) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                  DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const int64_t n_in = 256, n_out = 40;
    auto w = random_weight(t, n_in, n_out, 3);
    const auto wv = TensorView::contiguous(w.data(), t, {n_in, n_out});
    for (auto& be : backends_under_test()) {
      if (!be.batch_invariant) continue;
      for (const TensorView& weight : {wv, be->prepare_weight(wv)}) {
        for (int64_t n_tok : {2, 3, 5, 9}) {
          auto x = random_floats(static_cast<size_t>(n_in * n_tok), 20 + static_cast<uint32_t>(n_tok));
          std::vector<float> all(static_cast<size_t>(n_out * n_tok)), one(static_cast<size_t>(n_out));
          be->matmul(weight, TensorView::contiguous(x.data(), DType::F32, {n_in, n_tok}),
                     TensorView::contiguous(all.data(), DType::F32, {n_out, n_tok}));
          for (int64_t k = 0; k < n_tok; ++k) {
            be->matmul(weight, TensorView::contiguous(x.data() + k * n_in, DType::F32, {n_in, 1}),
                       TensorView::contiguous(one.data(), DType::F32, {n_out, 1}));
            EXPECT_EQ(0, std::memcmp(one.data(), all.data() + k * n_out, n_out * sizeof(float)))
                << be->name() << " " << dtype_name(t) << " layout " << int{weight.layout} << ": token " << k << " of "
                << n_tok;
          }
        }
      }
    }
  }
}

// Weights sharing an input (QKV, gate and up) in one call give what separate calls give, bit for bit.
TEST(Ops, MatmulGroupMatchesSeparateMatmuls) {
  for (DType t : {DType::F16, DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    const int64_t n_in = 256;
    const int64_t n_out[] = {41, 8, 7};  // odd: a GEMV's row pair across two weights
    std::vector<std::vector<uint8_t>> w;
    for (int i = 0; i < 3; ++i) w.push_back(random_weight(t, n_in, n_out[i], 60 + i));
    for (auto& be : backends_under_test()) {
      for (int64_t n_tok : {1, 5}) {
        auto x = random_floats(static_cast<size_t>(n_in * n_tok), 70);
        const auto xv = TensorView::contiguous(x.data(), DType::F32, {n_in, n_tok});
        std::vector<TensorView> wv, yv;
        std::vector<std::vector<float>> grouped(3), single(3);
        for (int i = 0; i < 3; ++i) {
          wv.push_back(be->prepare_weight(TensorView::contiguous(w[i].data(), t, {n_in, n_out[i]})));
          grouped[i].assign(static_cast<size_t>(n_out[i] * n_tok), std::nanf(""));
          single[i].assign(grouped[i].size(), std::nanf(""));
          yv.push_back(TensorView::contiguous(grouped[i].data(), DType::F32, {n_out[i], n_tok}));
        }
        be->matmul_group(wv, xv, yv);
        for (int i = 0; i < 3; ++i) {
          be->matmul(wv[i], xv, TensorView::contiguous(single[i].data(), DType::F32, {n_out[i], n_tok}));
          EXPECT_EQ(0, std::memcmp(grouped[i].data(), single[i].data(), single[i].size() * sizeof(float)))
              << be->name() << " " << dtype_name(t) << " weight " << i << ", " << n_tok << " tokens";
        }
      }
    }
  }
}

// A norm or SwiGLU told which weights read its output next (rms_norm_for, add_rms_norm_for,
// swiglu_for) may round that output for them in the same pass: the matmuls after it give the plain
// calls' bits. Any op that writes in between (here an add into the output) makes the matmul round
// the new values.
TEST(Ops, NormRoundedForTheNextMatmulsEqualsThePlainCalls) {
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::F16}) {
    const int64_t n_in = 256;
    const int64_t n_out[] = {40, 16};
    std::vector<std::vector<uint8_t>> w;
    for (int i = 0; i < 2; ++i) w.push_back(random_weight(t, n_in, n_out[i], 80 + i));
    const auto nw = random_floats(static_cast<size_t>(n_in), 81);
    const auto nwv = TensorView::contiguous(const_cast<float*>(nw.data()), DType::F32, {n_in});
    for (auto& be : backends_under_test()) {
      std::vector<TensorView> wv;
      for (int i = 0; i < 2; ++i) wv.push_back(be->prepare_weight(TensorView::contiguous(w[i].data(), t, {n_in, n_out[i]})));
      for (int64_t n_tok : {1, 7}) {
        const size_t n_x = static_cast<size_t>(n_in * n_tok);
        // run(fused, poke): the norm (plain or told of wv), then optionally an add into its output,
        // then matmul_group over it; returns both outputs.
        auto run = [&](bool fused, int op, bool poke) {  // op 0: rms_norm, 1: add_rms_norm, 2: swiglu
          auto x = random_floats(n_x, 82), d = random_floats(n_x, 83), out = std::vector<float>(n_x, 0.f);
          const auto xv = TensorView::contiguous(x.data(), DType::F32, {n_in, n_tok});
          const auto dv = TensorView::contiguous(d.data(), DType::F32, {n_in, n_tok});
          const auto ov = TensorView::contiguous(out.data(), DType::F32, {n_in, n_tok});
          if (op == 1) fused ? be->add_rms_norm_for(xv, dv, nwv, 1e-5f, ov, wv) : be->add_rms_norm(xv, dv, nwv, 1e-5f, ov);
          else if (op == 0) fused ? be->rms_norm_for(xv, nwv, 1e-5f, ov, wv) : be->rms_norm(xv, nwv, 1e-5f, ov);
          else fused ? be->swiglu_for(xv, dv, ov, wv) : be->swiglu(xv, dv, ov);
          if (poke) be->add(ov, dv, ov);
          std::vector<std::vector<float>> y(2);
          std::vector<TensorView> yv;
          for (int i = 0; i < 2; ++i) {
            y[i].assign(static_cast<size_t>(n_out[i] * n_tok), std::nanf(""));
            yv.push_back(TensorView::contiguous(y[i].data(), DType::F32, {n_out[i], n_tok}));
          }
          be->matmul_group(wv, ov, yv);
          return y;
        };
        for (int op : {0, 1, 2})
          for (bool poke : {false, true}) {
            // The fused run first: the plain one would leave the same rounded rows behind.
            const auto got = run(true, op, poke), want = run(false, op, poke);
            for (int i = 0; i < 2; ++i)
              EXPECT_EQ(0, std::memcmp(got[i].data(), want[i].data(), want[i].size() * sizeof(float)))
                  << be->name() << " " << dtype_name(t) << " weight " << i << ", " << n_tok << " tokens, op " << op
                  << (poke ? ", written in between" : "");
          }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulTest, ::testing::ValuesIn(matmul_cases()),
                         [](const auto& info) {
                           const auto& c = info.param;
                           return std::string(dtype_name(c.type)) + "_" + std::to_string(c.n_in) + "x" +
                                  std::to_string(c.n_out) + "x" + std::to_string(c.n_tok);
                         });

TEST(Ops, MatmulReferenceIsExactOnSmallIntegers) {
  // A hand-checked case: W = [[1, 2], [3, 4], [5, 6]] (3 rows of 2), x = [1, -1].
  float w[6] = {1, 2, 3, 4, 5, 6}, x[2] = {1, -1}, y[3];
  ref::matmul(TensorView::contiguous(w, DType::F32, {2, 3}), TensorView::contiguous(x, DType::F32, {2, 1}),
              TensorView::contiguous(y, DType::F32, {3, 1}));
  EXPECT_EQ(y[0], -1);
  EXPECT_EQ(y[1], -1);
  EXPECT_EQ(y[2], -1);
}

TEST(Ops, RmsNormSwigluAddRope) {
  for (int64_t n : {1, 7, 64, 129}) {
    const int64_t rows = 5;
    auto x = random_floats(n * rows, 1), w = random_floats(n, 2), u = random_floats(n * rows, 3);
    const auto xv = TensorView::contiguous(x.data(), DType::F32, {n, rows});
    const auto uv = TensorView::contiguous(u.data(), DType::F32, {n, rows});
    const auto wv = TensorView::contiguous(w.data(), DType::F32, {n});
    for (auto& be : backends_under_test()) {
      Guarded e(n * rows), g(n * rows);
      auto ev = TensorView::contiguous(e.data(), DType::F32, {n, rows});
      auto gv = TensorView::contiguous(g.data(), DType::F32, {n, rows});
      ref::rms_norm(xv, wv, 1e-5f, ev);
      be->rms_norm(xv, wv, 1e-5f, gv);
      EXPECT_TRUE(g.guards_intact());
      EXPECT_LT(nmse(g.data(), e.data(), g.n), 1e-12) << "rms_norm " << n;
      ref::swiglu(xv, uv, ev);
      be->swiglu(xv, uv, gv);
      EXPECT_LT(nmse(g.data(), e.data(), g.n), 1e-12) << "swiglu " << n;
      ref::add(xv, uv, ev);
      be->add(xv, uv, gv);
      EXPECT_LT(nmse(g.data(), e.data(), g.n), 1e-14) << "add " << n;
      EXPECT_TRUE(g.guards_intact());
    }
  }
  // RoPE in both layouts, positions out of order, partial rotation.
  for (RopeLayout layout : {RopeLayout::Normal, RopeLayout::NeoX}) {
    const int64_t d = 64, heads = 3, T = 4;
    const int32_t pos[T] = {0, 5, 1, 4095};
    auto x = random_floats(d * heads * T, 9);
    for (int n_rot : {64, 32}) {
      RopeParams p{.n_rot = n_rot, .theta_base = 10000.0f, .layout = layout};
      auto e = x, g = x;
      ref::rope(TensorView::contiguous(e.data(), DType::F32, {d, heads, T}), pos, p);
      for (auto& be : backends_under_test()) {
        g = x;
        be->rope(TensorView::contiguous(g.data(), DType::F32, {d, heads, T}), pos, p);
        EXPECT_LT(nmse(g.data(), e.data(), g.size()), 1e-12);
      }
      // Position 0 is the identity; the norm of each rotated pair is preserved.
      for (int64_t i = 0; i < d * heads; ++i) EXPECT_EQ(e[i], x[i]);
      if (n_rot < d) {
        EXPECT_EQ(e[d * heads + d - 1], x[d * heads + d - 1]);  // unrotated tail untouched
      }
    }
  }
}

// The fused ops equal their parts: add_rms_norm is add then rms_norm (its output aliasing the
// added rows, as the model calls it), rope_qk is rope on q and on k. Bit for bit on the CPU (same
// arithmetic per row), within the per-op bound elsewhere.
TEST(Ops, FusedAddNormAndRopeQkEqualTheirParts) {
  for (int64_t n : {1, 7, 64, 129}) {
    const int64_t rows = 5;
    const auto x0 = random_floats(n * rows, 11), d0 = random_floats(n * rows, 12), w = random_floats(n, 13);
    const auto wv = TensorView::contiguous(const_cast<float*>(w.data()), DType::F32, {n});
    // Expected: the reference's two ops.
    auto ex = x0, ed = d0;
    const auto exv = TensorView::contiguous(ex.data(), DType::F32, {n, rows});
    const auto edv = TensorView::contiguous(ed.data(), DType::F32, {n, rows});
    ref::add(exv, edv, exv);
    ref::rms_norm(exv, wv, 1e-5f, edv);
    for (auto& be : backends_under_test()) {
      Guarded gx(n * rows), gd(n * rows);
      std::copy(x0.begin(), x0.end(), gx.data());
      std::copy(d0.begin(), d0.end(), gd.data());
      const auto gxv = TensorView::contiguous(gx.data(), DType::F32, {n, rows});
      const auto gdv = TensorView::contiguous(gd.data(), DType::F32, {n, rows});
      be->add_rms_norm(gxv, gdv, wv, 1e-5f, gdv);
      EXPECT_TRUE(gx.guards_intact() && gd.guards_intact()) << "add_rms_norm " << n;
      EXPECT_LT(nmse(gx.data(), ex.data(), gx.n), 1e-14) << "add_rms_norm sum " << n;
      EXPECT_LT(nmse(gd.data(), ed.data(), gd.n), 1e-12) << "add_rms_norm norm " << n;
      if (be->name() == "cpu") {
        EXPECT_EQ(0, std::memcmp(gx.data(), ex.data(), ex.size() * sizeof(float))) << "add_rms_norm sum " << n;
        EXPECT_EQ(0, std::memcmp(gd.data(), ed.data(), ed.size() * sizeof(float))) << "add_rms_norm norm " << n;
      }
    }
  }
  for (RopeLayout layout : {RopeLayout::Normal, RopeLayout::NeoX}) {
    const int64_t d = 64, q_heads = 6, k_heads = 2, T = 3;
    const int32_t pos[T] = {7, 0, 300};
    const auto q0 = random_floats(d * q_heads * T, 14), k0 = random_floats(d * k_heads * T, 15);
    const RopeParams p{.n_rot = 64, .theta_base = 10000.0f, .layout = layout};
    auto eq = q0, ek = k0;
    ref::rope(TensorView::contiguous(eq.data(), DType::F32, {d, q_heads, T}), pos, p);
    ref::rope(TensorView::contiguous(ek.data(), DType::F32, {d, k_heads, T}), pos, p);
    for (auto& be : backends_under_test()) {
      auto gq = q0, gk = k0;
      be->rope_qk(TensorView::contiguous(gq.data(), DType::F32, {d, q_heads, T}),
                  TensorView::contiguous(gk.data(), DType::F32, {d, k_heads, T}), pos, p);
      EXPECT_LT(nmse(gq.data(), eq.data(), gq.size()), 1e-12) << "rope_qk q";
      EXPECT_LT(nmse(gk.data(), ek.data(), gk.size()), 1e-12) << "rope_qk k";
      if (be->name() == "cpu") {
        EXPECT_EQ(gq, eq);
        EXPECT_EQ(gk, ek);
      }
    }
  }
}

// One backend through a sequence of calls, as a forward pass makes them: rope_qk keeps the cos/sin
// of the positions it was last given, and must notice new positions (same count), a new base and a
// new rotation width (bit for bit on the CPU); SwiGLU's one wide row is split across the threads.
TEST(Ops, RopeAndSwigluAcrossCallsOnOneBackend) {
  const int64_t d = 64, heads = 3, T = 2;
  const int32_t pos_a[T] = {9, 100}, pos_b[T] = {9, 101};
  const auto x0 = random_floats(d * heads * T, 21);
  struct Call {
    const int32_t* pos;
    float base;
    int n_rot;
  };
  const Call calls[] = {{pos_a, 10000.0f, 64}, {pos_a, 10000.0f, 64}, {pos_b, 10000.0f, 64},
                        {pos_b, 500000.0f, 64}, {pos_b, 500000.0f, 32}, {pos_a, 10000.0f, 64}};
  for (auto& be : backends_under_test()) {
    for (const Call& c : calls) {
      const RopeParams p{.n_rot = c.n_rot, .theta_base = c.base, .layout = RopeLayout::Normal};
      auto e = x0, gq = x0, gk = x0;
      ref::rope(TensorView::contiguous(e.data(), DType::F32, {d, heads, T}), c.pos, p);
      be->rope_qk(TensorView::contiguous(gq.data(), DType::F32, {d, heads, T}),
                  TensorView::contiguous(gk.data(), DType::F32, {d, heads, T}), c.pos, p);
      EXPECT_LT(nmse(gq.data(), e.data(), e.size()), 1e-12) << be->name() << " base " << c.base << " n_rot " << c.n_rot;
      EXPECT_LT(nmse(gk.data(), e.data(), e.size()), 1e-12) << be->name();
      if (be->name() == "cpu") EXPECT_TRUE(gq == e && gk == e) << "base " << c.base << " n_rot " << c.n_rot;
    }
    const int64_t n = 5003;
    const auto g0 = random_floats(n, 22), u0 = random_floats(n, 23);
    std::vector<float> e(n);
    Guarded o(n);
    auto view = [&](const float* v) { return TensorView::contiguous(const_cast<float*>(v), DType::F32, {n, 1}); };
    ref::swiglu(view(g0.data()), view(u0.data()), view(e.data()));
    be->swiglu(view(g0.data()), view(u0.data()), view(o.data()));
    EXPECT_TRUE(o.guards_intact());
    EXPECT_LT(nmse(o.data(), e.data(), n), 1e-12) << be->name();
    // Split or not, each element is the same arithmetic: the row alone equals either of two
    // copies of it run as two rows (one per thread).
    std::vector<float> g2(g0), u2(u0), o2(2 * n);
    g2.insert(g2.end(), g0.begin(), g0.end());
    u2.insert(u2.end(), u0.begin(), u0.end());
    auto view2 = [&](float* v) { return TensorView::contiguous(v, DType::F32, {n, 2}); };
    be->swiglu(view2(g2.data()), view2(u2.data()), view2(o2.data()));
    EXPECT_EQ(0, std::memcmp(o.data(), o2.data(), n * sizeof(float))) << be->name();
    EXPECT_EQ(0, std::memcmp(o.data(), o2.data() + n, n * sizeof(float))) << be->name();
  }
}

// kv_store_kv stores k and v as the two kv_store calls do, bit for bit (F16 and F32 caches, slots
// out of order, untouched slots left as they were).
TEST(Ops, KvStoreOfKAndVEqualsTwoStores) {
  const int64_t d = 64, heads = 2, T = 3, n_slots = 8;
  const int32_t slots[T] = {5, 0, 6};
  const auto k0 = random_floats(d * heads * T, 31), v0 = random_floats(d * heads * T, 32);
  for (DType ct : {DType::F16, DType::F32}) {
    const size_t bytes = row_bytes(ct, d) * heads * n_slots;
    std::vector<uint8_t> ek(bytes, 0x5A), ev(bytes, 0x5A);
    const auto kv = TensorView::contiguous(const_cast<float*>(k0.data()), DType::F32, {d, heads, T});
    const auto vv = TensorView::contiguous(const_cast<float*>(v0.data()), DType::F32, {d, heads, T});
    ref::kv_store(kv, TensorView::contiguous(ek.data(), ct, {d, heads, n_slots}), slots);
    ref::kv_store(vv, TensorView::contiguous(ev.data(), ct, {d, heads, n_slots}), slots);
    for (auto& be : backends_under_test()) {
      std::vector<uint8_t> gk(bytes, 0x5A), gv(bytes, 0x5A);
      be->kv_store_kv(kv, vv, TensorView::contiguous(gk.data(), ct, {d, heads, n_slots}),
                      TensorView::contiguous(gv.data(), ct, {d, heads, n_slots}), slots);
      EXPECT_EQ(gk, ek) << be->name() << " " << dtype_name(ct) << " k";
      EXPECT_EQ(gv, ev) << be->name() << " " << dtype_name(ct) << " v";
    }
  }
}

// matmul_swiglu is matmul_group then swiglu on each backend, bit for bit (every weight type the
// feed-forward may have, decode-sized and prefill-sized batches, rows not a multiple of anything).
TEST(Ops, MatmulSwigluEqualsGroupThenSwiglu) {
  const int64_t n_in = 256, n_ff = 72;
  for (DType t : {DType::BF16, DType::F16, DType::F32, DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    auto wg = random_weight(t, n_in, n_ff, 91), wu = random_weight(t, n_in, n_ff, 92);
    const TensorView g_w = TensorView::contiguous(wg.data(), t, {n_in, n_ff});
    const TensorView u_w = TensorView::contiguous(wu.data(), t, {n_in, n_ff});
    for (int64_t T : {1, 5, 40}) {
      auto x = random_floats(static_cast<size_t>(n_in * T), 93);
      const TensorView xv = TensorView::contiguous(x.data(), DType::F32, {n_in, T});
      auto backends = backends_under_test();
      if (cuda_unavailable_reason().empty())  // f32 activations: the GEMV's other instantiation
        backends.push_back({std::make_unique<tern::testing::HostAdapter>(
                                make_cuda_backend({.exact_activations = true}), "cuda-exact"),
                            true, 0, 1e-5, false});
      for (auto& be : backends) {
        const TensorView gw = be->prepare_weight(g_w), uw = be->prepare_weight(u_w);
        std::vector<float> eg(static_cast<size_t>(n_ff * T)), eu(eg.size());
        const TensorView ws[] = {gw, uw};
        const TensorView ys[] = {TensorView::contiguous(eg.data(), DType::F32, {n_ff, T}),
                                 TensorView::contiguous(eu.data(), DType::F32, {n_ff, T})};
        be->matmul_group(ws, xv, ys);
        be->swiglu(ys[0], ys[1], ys[0]);
        Guarded gg(eg.size());
        std::vector<float> gu(eg.size());
        be->matmul_swiglu(gw, uw, xv, TensorView::contiguous(gg.data(), DType::F32, {n_ff, T}),
                          TensorView::contiguous(gu.data(), DType::F32, {n_ff, T}), {});
        EXPECT_TRUE(gg.guards_intact()) << be->name();
        EXPECT_EQ(0, std::memcmp(gg.data(), eg.data(), eg.size() * sizeof(float)))
            << be->name() << " " << dtype_name(t) << " tokens " << T;
      }
    }
  }
}

// rope_qk_store is rope_qk then kv_store_kv on each backend, bit for bit: q and k rotated, the
// rotated k and v at their slots (out of order; untouched slots left as they were), both layouts,
// a rotation narrower than the head (the rest of k stored as it is), F16 and F32 caches.
TEST(Ops, RopeQkStoreEqualsRopeThenStores) {
  const int64_t d = 64, q_heads = 6, k_heads = 2, T = 3, n_slots = 8;
  const int32_t pos[T] = {7, 0, 300}, slots[T] = {5, 0, 6};
  const auto q0 = random_floats(d * q_heads * T, 81), k0 = random_floats(d * k_heads * T, 82);
  const auto v0 = random_floats(d * k_heads * T, 83);
  for (RopeLayout layout : {RopeLayout::Normal, RopeLayout::NeoX}) {
    for (int n_rot : {64, 32}) {
      const RopeParams p{.n_rot = n_rot, .theta_base = 10000.0f, .layout = layout};
      for (DType ct : {DType::F16, DType::F32}) {
        const size_t bytes = row_bytes(ct, d) * k_heads * n_slots;
        for (auto& be : backends_under_test()) {
          auto eq = q0, ek = k0, gq = q0, gk = k0;
          std::vector<uint8_t> ekc(bytes, 0x5A), evc(bytes, 0x5A), gkc(bytes, 0x5A), gvc(bytes, 0x5A);
          auto view = [&](std::vector<float>& x, int64_t heads) {
            return TensorView::contiguous(x.data(), DType::F32, {d, heads, T});
          };
          auto cache = [&](std::vector<uint8_t>& b) { return TensorView::contiguous(b.data(), ct, {d, k_heads, n_slots}); };
          const auto vv = TensorView::contiguous(const_cast<float*>(v0.data()), DType::F32, {d, k_heads, T});
          be->rope_qk(view(eq, q_heads), view(ek, k_heads), pos, p);
          be->kv_store_kv(view(ek, k_heads), vv, cache(ekc), cache(evc), slots);
          be->rope_qk_store(view(gq, q_heads), view(gk, k_heads), vv, pos, p, cache(gkc), cache(gvc), slots);
          const std::string what = std::string(be->name()) + (layout == RopeLayout::NeoX ? " neox" : " normal") +
                                   " n_rot " + std::to_string(n_rot) + " " + std::string(dtype_name(ct));
          EXPECT_EQ(gq, eq) << what << " q";
          EXPECT_EQ(gk, ek) << what << " k";
          EXPECT_EQ(gkc, ekc) << what << " k cache";
          EXPECT_EQ(gvc, evc) << what << " v cache";
        }
      }
    }
  }
}

// On the GPU, a decode-sized matmul whose input was written by RMSNorm, the residual add + RMSNorm,
// SwiGLU or the gate/up GEMV with SwiGLU (matmul_swiglu) takes that input rounded by the op itself
// (from the second pass on, once the backend has seen which type the matmul asks for) instead of
// rounding it in a launch of its own. The outputs must be the same bits as on the first pass, where
// the matmul rounded its input itself.
TEST(Ops, CudaRoundingInTheProducingOpChangesNoBits) {
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA op tests skipped: " << why;
  auto be = make_cuda_backend({});
  const int64_t n = 256, n_out = 40;
  std::vector<std::unique_ptr<Buffer>> keep;
  auto device = [&](std::vector<float> host, std::initializer_list<int64_t> shape) {
    keep.push_back(be->alloc(host.size() * sizeof(float)));
    be->to_backend(keep.back()->data(), host.data(), host.size() * sizeof(float));
    return TensorView::contiguous(keep.back()->data(), DType::F32, shape, Device::CUDA);
  };
  auto read = [&](const TensorView& t) {
    std::vector<float> h(static_cast<size_t>(t.nelements()));
    be->to_host(h.data(), t.data, h.size() * sizeof(float));
    return h;
  };
  for (DType t : {DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    auto wq = random_weight(t, n, n_out, 41);
    const TensorView w = be->prepare_weight(TensorView::contiguous(wq.data(), t, {n, n_out}));
    // Gate and up weights for matmul_swiglu (n -> n_ff), and a down projection reading its output:
    // n_ff rows are more GEMV blocks than the GPU runs at once, so blocks that start late read the
    // input after others have written their outputs (which must not land on it).
    const int64_t n_ff = 8192;
    auto wq1 = random_weight(t, n, n_ff, 46), wq2 = random_weight(t, n, n_ff, 47);
    auto wq3 = random_weight(t, n_ff, n_out, 48);
    const TensorView wf = be->prepare_weight(TensorView::contiguous(wq1.data(), t, {n, n_ff}));
    const TensorView wf2 = be->prepare_weight(TensorView::contiguous(wq2.data(), t, {n, n_ff}));
    const TensorView wd = be->prepare_weight(TensorView::contiguous(wq3.data(), t, {n_ff, n_out}));
    for (int64_t T : {1, 3}) {
      const auto x0 = random_floats(n * T, 42), d0 = random_floats(n * T, 43), g0 = random_floats(n * T, 44);
      const TensorView norm_w = device(random_floats(n, 45), {n});
      const TensorView x = device(x0, {n, T}), d = device(d0, {n, T}), g = device(g0, {n, T});
      const TensorView h = device(g0, {n, T}), h2 = device(g0, {n, T});  // one output per op: each learns once
      const TensorView h3 = device(std::vector<float>(n_ff * T), {n_ff, T});
      const TensorView u3 = device(std::vector<float>(n_ff * T), {n_ff, T});
      const TensorView y = device(std::vector<float>(n_out * T), {n_out, T});
      std::vector<std::vector<float>> first;
      for (int pass = 0; pass < 3; ++pass) {
        std::vector<std::vector<float>> got;
        be->to_backend(x.data, x0.data(), x0.size() * sizeof(float));
        be->to_backend(d.data, d0.data(), d0.size() * sizeof(float));
        be->begin_pass(1 << 12);
        be->rms_norm(x, norm_w, 1e-5f, h);
        be->matmul(w, h, y);
        got.push_back(read(y));
        be->begin_pass(1 << 12);
        be->add_rms_norm(x, d, norm_w, 1e-5f, d);
        be->matmul(w, d, y);
        got.push_back(read(y));
        got.push_back(read(d));
        be->begin_pass(1 << 12);
        be->swiglu(g, x, h2);
        be->matmul(w, h2, y);
        got.push_back(read(y));
        got.push_back(read(h2));
        // The gate and up GEMVs with SwiGLU in their epilogue (16-bit weights), then the down
        // projection reading its output.
        be->begin_pass(1 << 12);
        be->matmul_swiglu(wf, wf2, x, h3, u3, std::span(&wd, 1));
        be->matmul(wd, h3, y);
        got.push_back(read(y));
        got.push_back(read(h3));
        if (pass == 0) first = got;
        for (size_t i = 0; i < got.size(); ++i)
          EXPECT_EQ(0, std::memcmp(got[i].data(), first[i].data(), got[i].size() * sizeof(float)))
              << dtype_name(t) << " tokens " << T << " pass " << pass << " output " << i;
      }
    }
  }
}

// The same for decode attention, whose merge kernel (or, when no context of the pass has more than
// one segment, the attention kernel itself) writes the output and rounds it for the output
// projection: a pass with contexts of one and three segments and a pass of one-segment contexts,
// GQA, the projection's weights of each rounding type.
TEST(Ops, CudaDecodeAttentionRoundsForTheProjectionWithoutChangingBits) {
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "CUDA op tests skipped: " << why;
  auto be = make_cuda_backend({});
  const int64_t d = 64, n_head = 8, n_kv = 2, block = 16, n_blocks = 48, n_out = 40, T = 3;
  std::vector<std::unique_ptr<Buffer>> keep;
  auto device = [&](const void* host, size_t bytes) {
    keep.push_back(be->alloc(bytes));
    be->to_backend(keep.back()->data(), host, bytes);
    return keep.back()->data();
  };
  std::mt19937 rng(71);
  std::vector<uint16_t> kh(static_cast<size_t>(d * n_kv * block * n_blocks)), vh(kh.size());
  for (auto* c : {&kh, &vh})
    for (auto& x : *c) x = f32_to_fp16(std::normal_distribution<float>(0.0f, 1.0f)(rng));
  const TensorView kc = TensorView::contiguous(device(kh.data(), kh.size() * 2), DType::F16, {d, n_kv, block * n_blocks},
                                               Device::CUDA);
  const TensorView vc = TensorView::contiguous(device(vh.data(), vh.size() * 2), DType::F16, {d, n_kv, block * n_blocks},
                                               Device::CUDA);
  // Sequence 0 holds blocks 47, 46, ... (positions up to 719: three segments), sequence 1 blocks 0..2.
  std::vector<int32_t> table0, table1;
  for (int32_t b = 0; b < 45; ++b) table0.push_back(n_blocks - 1 - b);
  for (int32_t b = 0; b < 3; ++b) table1.push_back(b);
  const int32_t tok_seq[T] = {0, 1, 0};
  const int32_t positions[2][T] = {{700, 40, 255}, {100, 40, 255}};
  const auto q0 = random_floats(static_cast<size_t>(d * n_head * T), 72, 2.0f);
  const TensorView q = TensorView::contiguous(device(q0.data(), q0.size() * 4), DType::F32, {d, n_head, T}, Device::CUDA);
  std::vector<float> zeros(static_cast<size_t>(d * n_head * T));
  const TensorView att = TensorView::contiguous(device(zeros.data(), zeros.size() * 4), DType::F32, {d, n_head, T},
                                                Device::CUDA);
  const TensorView y = TensorView::contiguous(device(zeros.data(), n_out * T * 4), DType::F32, {n_out, T}, Device::CUDA);
  auto read = [&](const TensorView& t) {
    std::vector<float> h(static_cast<size_t>(t.nelements()));
    be->to_host(h.data(), t.data, h.size() * sizeof(float));
    return h;
  };
  for (const auto& tok_pos : positions) {
    for (DType t : {DType::BF16, DType::F16, DType::Q8_0, DType::Q4_1}) {
      auto wq = random_weight(t, d * n_head, n_out, 73);
      const TensorView w = be->prepare_weight(TensorView::contiguous(wq.data(), t, {d * n_head, n_out}));
      std::vector<std::vector<float>> first;
      for (int pass = 0; pass < 3; ++pass) {
        be->begin_pass(1 << 14);
        const int32_t* s0 = be->stage(std::span<const int32_t>(table0));
        const int32_t* s1 = be->stage(std::span<const int32_t>(table1));
        const KvSeq seqs_host[2] = {{s0, static_cast<int32_t>(table0.size())}, {s1, static_cast<int32_t>(table1.size())}};
        const AttentionArgs a{.q = q, .k = kc, .v = vc, .out = att,
                        .seqs = be->stage(std::span<const KvSeq>(seqs_host, 2)),
                        .token_seq = be->stage(std::span<const int32_t>(tok_seq, T)),
                        .token_pos = be->stage(std::span<const int32_t>(tok_pos, T)),
                        .block_size = block, .scale = 0.125f};
        be->attention(a);
        be->matmul(w, TensorView::contiguous(att.data, DType::F32, {d * n_head, T}, Device::CUDA), y);
        const std::vector<std::vector<float>> got = {read(y), read(att)};
        if (pass == 0) first = got;
        for (size_t i = 0; i < got.size(); ++i)
          EXPECT_EQ(0, std::memcmp(got[i].data(), first[i].data(), got[i].size() * sizeof(float)))
              << dtype_name(t) << " first position " << tok_pos[0] << " pass " << pass
              << (i ? " attention" : " projection");
      }
    }
  }
}

TEST(Ops, RopeNormalLayoutRotatesAdjacentPairs) {
  // At position 1 with n_rot 2, pair (x0, x1) rotates by exactly 1 radian.
  float x[4] = {1, 0, 0, 1};
  const int32_t pos[1] = {1};
  ref::rope(TensorView::contiguous(x, DType::F32, {4, 1, 1}), pos, {.n_rot = 2});
  EXPECT_NEAR(x[0], std::cos(1.0f), 1e-6);
  EXPECT_NEAR(x[1], std::sin(1.0f), 1e-6);
  EXPECT_EQ(x[2], 0);
  EXPECT_EQ(x[3], 1);
}

// A KV cache of one layer, [d, n_kv, slots] in `type`, holding random values (kept as f32 in kf/vf).
struct RandomCache {
  std::vector<uint8_t> kbuf, vbuf;
  std::vector<float> kf, vf;
  TensorView k, v;
  RandomCache(DType type, int64_t d, int64_t n_kv, int64_t slots, uint32_t seed)
      : kbuf(row_bytes(type, d) * n_kv * slots), vbuf(kbuf.size()), kf(random_floats(d * n_kv * slots, seed)),
        vf(random_floats(kf.size(), seed + 1)) {
    k = TensorView::contiguous(kbuf.data(), type, {d, n_kv, slots});
    v = TensorView::contiguous(vbuf.data(), type, {d, n_kv, slots});
    std::vector<int32_t> all(static_cast<size_t>(slots));
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(i);
    ref::kv_store(TensorView::contiguous(kf.data(), DType::F32, {d, n_kv, slots}), k, all.data());
    ref::kv_store(TensorView::contiguous(vf.data(), DType::F32, {d, n_kv, slots}), v, all.data());
  }
  // Attention of the tokens (tok_seq, tok_pos; q [d, n_head, T]) over this cache (no output yet).
  AttentionArgs args(std::vector<float>& q, int64_t n_head, const KvSeq* seqs, const std::vector<int32_t>& tok_seq,
                     const std::vector<int32_t>& tok_pos, int64_t block, float scale) const {
    const int64_t d = k.ne[0], T = static_cast<int64_t>(tok_seq.size());
    return {.q = TensorView::contiguous(q.data(), DType::F32, {d, n_head, T}), .k = k, .v = v, .seqs = seqs,
            .token_seq = tok_seq.data(), .token_pos = tok_pos.data(), .block_size = static_cast<int32_t>(block),
            .scale = scale};
  }
};

// Runs `a` on the reference and on every backend under test (guarded outputs); returns the
// reference's output.
std::vector<float> expect_attention_matches_reference(AttentionArgs a, double max_nmse) {
  const int64_t n = a.q.nelements();
  Guarded e(static_cast<size_t>(n));
  a.out = TensorView::contiguous(e.data(), DType::F32, {a.q.ne[0], a.q.ne[1], a.q.ne[2]});
  ref::attention(a);
  for (auto& be : backends_under_test()) {
    Guarded g(static_cast<size_t>(n));
    a.out = TensorView::contiguous(g.data(), DType::F32, {a.q.ne[0], a.q.ne[1], a.q.ne[2]});
    be->attention(a);
    EXPECT_TRUE(g.guards_intact()) << be->name();
    EXPECT_LT(nmse(g.data(), e.data(), g.n), bound(max_nmse, be.attention_nmse)) << be->name();
  }
  return {e.data(), e.data() + n};
}

// Block tables of two sequences: sequence 0 owns blocks [0, n0) in the shuffled order
// (b * stride) % n0 (stride coprime with n0), sequence 1 the next n1 blocks in order.
struct TwoSequenceTables {
  std::vector<int32_t> table0, table1;
  KvSeq seqs[2];
  TwoSequenceTables(int32_t n0, int32_t n1, int32_t stride) {
    for (int32_t b = 0; b < n0; ++b) table0.push_back((b * stride) % n0);
    for (int32_t b = n0; b < n0 + n1; ++b) table1.push_back(b);
    seqs[0] = {table0.data(), n0};
    seqs[1] = {table1.data(), n1};
  }
  TwoSequenceTables(const TwoSequenceTables&) = delete;  // seqs point into the tables
};

// Attention through block tables (blocks deliberately out of order), GQA, several sequences; a
// group of 20 heads takes more than one block of the CUDA decode kernels (16 or 8 heads each).
TEST(Ops, PagedAttentionMatchesReference) {
  for (DType kv_type : {DType::F32, DType::F16}) {
    for (auto [n_head, n_kv] : {std::pair{4, 4}, {6, 2}, {4, 1}, {20, 1}}) {
      const int64_t d = 64, block = 4, n_blocks = 12;
      const RandomCache cache(kv_type, d, n_kv, block * n_blocks, 21);
      const int32_t table0[] = {7, 2, 9}, table1[] = {0, 11, 5, 3};
      const KvSeq seqs[] = {{table0, 3}, {table1, 4}};
      const int32_t tok_seq[] = {0, 1, 1, 0, 1}, tok_pos[] = {0, 15, 3, 10, 8};
      const int64_t T = 5;
      auto q = random_floats(d * n_head * T, 23);
      const AttentionArgs a{.q = TensorView::contiguous(q.data(), DType::F32, {d, n_head, T}), .k = cache.k,
                            .v = cache.v, .seqs = seqs, .token_seq = tok_seq, .token_pos = tok_pos,
                            .block_size = block, .scale = 0.125f};
      // Scores agree exactly (see cpu::ScoresFn); the softmax is f32 against the reference's double.
      const std::vector<float> e = expect_attention_matches_reference(a, 1e-12);
      // Token 0 sits at position 0: its output is exactly V at its only slot (7 * block), per kv head.
      for (int64_t h = 0; h < n_head; ++h) {
        const int64_t kvh = h / (n_head / n_kv);
        const float* vr = cache.vf.data() + (7 * block * n_kv + kvh) * d;
        for (int64_t i = 0; i < d; ++i) {
          const float vv = kv_type == DType::F16 ? fp16_to_f32(f32_to_fp16(vr[i])) : vr[i];
          EXPECT_NEAR(e[static_cast<size_t>(h * d + i)], vv, 1e-6);
        }
      }
    }
  }
}

// Tiles of many consecutive prefill tokens (more than one query tile) next to decode tokens with
// contexts long enough to be split across threads and merged.
TEST(Ops, FlashAttentionTilesAndSplitContexts) {
  for (DType kv_type : {DType::F32, DType::F16}) {
    const int64_t d = 64, n_head = 6, n_kv = 2, block = 16, n_blocks = 80;
    const int64_t slots = block * n_blocks;
    const RandomCache cache(kv_type, d, n_kv, slots, 31);
    // Sequence 0: 70 blocks in a scrambled order; sequence 1: the other 10.
    const TwoSequenceTables tables(70, 10, 37);
    const KvSeq* seqs = tables.seqs;
    // 37 prefill tokens of sequence 1 (positions 100..136), then one decode token of sequence 0 at
    // position 1100, one of sequence 1 at 150 and one of sequence 0 at 700: two lone tokens with
    // contexts split into segments (5 and 3), merged in one pass.
    std::vector<int32_t> tok_seq, tok_pos;
    for (int32_t p = 100; p < 137; ++p) tok_seq.push_back(1), tok_pos.push_back(p);
    tok_seq.push_back(0), tok_pos.push_back(1100);
    tok_seq.push_back(1), tok_pos.push_back(150);
    tok_seq.push_back(0), tok_pos.push_back(700);
    const int64_t T = static_cast<int64_t>(tok_seq.size());
    auto q = random_floats(d * n_head * T, 33, 2.0f);  // peaked softmaxes as well as flat ones
    const AttentionArgs a = cache.args(q, n_head, seqs, tok_seq, tok_pos, block, 0.125f);
    expect_attention_matches_reference(a, 1e-11);  // peaked softmaxes: f32 exp vs double
  }
}

// The quantised KV caches (Q8_0: 8-bit levels with a scale per 32 values; FP8 E4M3) on the CPU
// backends: stores match the reference's bytes, and attention reads the caches directly.
TEST(Ops, QuantizedKvCaches) {
  for (DType kv_type : {DType::Q8_0, DType::F8_E4M3}) {
    const int64_t d = 64, n_head = 6, n_kv = 2, block = 16, n_blocks = 40;
    const RandomCache cache(kv_type, d, n_kv, block * n_blocks, 61);
    const TwoSequenceTables tables(30, 10, 7);
    const KvSeq* seqs = tables.seqs;
    std::vector<int32_t> tok_seq, tok_pos;
    for (int32_t p = 100; p < 137; ++p) tok_seq.push_back(1), tok_pos.push_back(p);
    tok_seq.push_back(0), tok_pos.push_back(470);
    const int64_t T = static_cast<int64_t>(tok_seq.size());
    auto q = random_floats(d * n_head * T, 63, 2.0f);
    const AttentionArgs a = cache.args(q, n_head, seqs, tok_seq, tok_pos, block, 0.125f);
    const int64_t n = a.q.nelements();
    Guarded e(static_cast<size_t>(n));
    AttentionArgs ar = a;
    ar.out = TensorView::contiguous(e.data(), DType::F32, {d, n_head, T});
    ref::attention(ar);
    // And kv_store: the same bytes as the reference's.
    const int32_t slots[] = {5, 77, 300};
    const auto src = random_floats(static_cast<size_t>(d * n_kv * 3), 65);
    std::vector<uint8_t> want(cache.kbuf.size()), got(cache.kbuf.size());
    const auto cache_of = [&](std::vector<uint8_t>& b) {
      return TensorView::contiguous(b.data(), kv_type, {d, n_kv, block * n_blocks});
    };
    ref::kv_store(TensorView::contiguous(const_cast<float*>(src.data()), DType::F32, {d, n_kv, 3}), cache_of(want), slots);
    for (auto& be : backends_under_test()) {
      if (be->device() != Device::CPU) continue;  // the CUDA backend stores f16 and f32 caches only, for now
      Guarded g(static_cast<size_t>(n));
      AttentionArgs ab = a;
      ab.out = TensorView::contiguous(g.data(), DType::F32, {d, n_head, T});
      be->attention(ab);
      EXPECT_TRUE(g.guards_intact()) << be->name();
      EXPECT_LT(nmse(g.data(), e.data(), g.n), 1e-11) << be->name() << " " << dtype_name(kv_type);
      std::fill(got.begin(), got.end(), 0);
      be->kv_store(TensorView::contiguous(const_cast<float*>(src.data()), DType::F32, {d, n_kv, 3}), cache_of(got), slots);
      EXPECT_EQ(got, want) << be->name() << " " << dtype_name(kv_type);
    }
  }
}

// Larger heads (Llama 3's 128, Gemma 3's 256) and a wide GQA group: a prefill run long enough for
// two query tiles, next to decode tokens of another sequence and one of its own beyond the first
// 256-position segment.
TEST(Ops, AttentionHeadSizes) {
  for (const int64_t d : {128, 256}) {
    const int64_t n_head = 8, n_kv = 1, block = 16, n_blocks = 24;
    const RandomCache cache(DType::F16, d, n_kv, block * n_blocks, 51);
    const TwoSequenceTables tables(20, 4, 7);
    const KvSeq* seqs = tables.seqs;
    std::vector<int32_t> tok_seq, tok_pos;
    tok_seq.push_back(1), tok_pos.push_back(40);
    for (int32_t p = 200; p < 290; ++p) tok_seq.push_back(0), tok_pos.push_back(p);
    tok_seq.push_back(1), tok_pos.push_back(63);
    tok_seq.push_back(0), tok_pos.push_back(300);  // a lone token whose context spans two segments
    const int64_t T = static_cast<int64_t>(tok_seq.size());
    auto q = random_floats(d * n_head * T, 53);
    const AttentionArgs a = cache.args(q, n_head, seqs, tok_seq, tok_pos, block, 1.0f / std::sqrt(static_cast<float>(d)));
    expect_attention_matches_reference(a, 1e-11);
  }
}

// A chunk of prefill far into a sequence (positions 300..760: twelve key tiles of 64, the CUDA
// kernel's ring of K/V tiles wrapping more than once, the query tiles not aligned to the key
// tiles), next to a short prefill of another sequence, whose tiles end early.
TEST(Ops, LongPrefillChunkOverManyKeyTiles) {
  for (const int64_t d : {64, 128}) {
    const int64_t n_head = 4, n_kv = 2, block = 16, n_blocks = 56;
    const RandomCache cache(DType::F16, d, n_kv, block * n_blocks, 71);
    const TwoSequenceTables tables(48, 8, 11);
    const KvSeq* seqs = tables.seqs;
    std::vector<int32_t> tok_seq, tok_pos;
    for (int32_t p = 300; p <= 760; ++p) tok_seq.push_back(0), tok_pos.push_back(p);
    for (int32_t p = 0; p < 70; ++p) tok_seq.push_back(1), tok_pos.push_back(p);
    const int64_t T = static_cast<int64_t>(tok_seq.size());
    auto q = random_floats(d * n_head * T, 73, 2.0f);
    const AttentionArgs a = cache.args(q, n_head, seqs, tok_seq, tok_pos, block, 1.0f / std::sqrt(static_cast<float>(d)));
    expect_attention_matches_reference(a, 1e-11);
  }
}

// Batch invariance of attention: a token's output has the same bits whether it runs in a prefill
// tile with its neighbours, alone (decode, its long context split into work items), or cut into
// other chunks next to another sequence's tokens.
TEST(Ops, AttentionIsBatchInvariant) {
  for (DType kv_type : {DType::F32, DType::F16}) {
    const int64_t d = 64, n_head = 4, n_kv = 2, block = 16, n_blocks = 64;
    const RandomCache cache(kv_type, d, n_kv, block * n_blocks, 41);
    const TwoSequenceTables tables(48, 16, 29);
    const KvSeq* seqs = tables.seqs;
    // Sequence 0's tokens at positions 500..539 (crossing the 512 segment boundary).
    const int32_t first = 500, n = 40;
    auto q = random_floats(d * n_head * n, 43, 2.0f);
    auto run = [&](const std::vector<int32_t>& idx, const std::vector<int32_t>& tok_seq,
                   const std::vector<int32_t>& tok_pos, const std::vector<float>& qs, Backend& be) {
      const auto T = static_cast<int64_t>(tok_seq.size());
      std::vector<float> out(static_cast<size_t>(d * n_head * T));
      be.attention({.q = TensorView::contiguous(const_cast<float*>(qs.data()), DType::F32, {d, n_head, T}),
                    .k = cache.k, .v = cache.v,
                    .out = TensorView::contiguous(out.data(), DType::F32, {d, n_head, T}), .seqs = seqs,
                    .token_seq = tok_seq.data(), .token_pos = tok_pos.data(), .block_size = block,
                    .scale = 0.125f});
      return out;
    };
    const size_t row = static_cast<size_t>(d * n_head);
    for (auto& be : backends_under_test()) {
      if (!be.batch_invariant) continue;
      // All 40 as one prefill chunk.
      std::vector<int32_t> all_seq(n, 0), all_pos(n), all_idx(n);
      for (int32_t i = 0; i < n; ++i) all_pos[i] = first + i, all_idx[i] = i;
      const auto whole = run(all_idx, all_seq, all_pos, q, *be);
      // Each token alone, and chunks of 7 with a token of sequence 1 in front.
      for (int32_t i = 0; i < n; ++i) {
        const std::vector<float> qi(q.begin() + i * row, q.begin() + (i + 1) * row);
        const auto alone = run({i}, {0}, {first + i}, qi, *be);
        ASSERT_TRUE(std::equal(alone.begin(), alone.end(), whole.begin() + i * row)) << be->name() << " token " << i;
      }
      for (int32_t c0 = 0; c0 < n; c0 += 7) {
        const int32_t c1 = std::min(n, c0 + 7);
        std::vector<int32_t> ts = {1}, tp = {200};
        std::vector<float> qs(random_floats(row, 45));
        for (int32_t i = c0; i < c1; ++i) {
          ts.push_back(0), tp.push_back(first + i);
          qs.insert(qs.end(), q.begin() + i * row, q.begin() + (i + 1) * row);
        }
        const auto mixed = run({}, ts, tp, qs, *be);
        ASSERT_TRUE(std::equal(mixed.begin() + row, mixed.end(), whole.begin() + c0 * row))
            << be->name() << " chunk at " << c0;
      }
    }
  }
}

// Each backend's top_k picks a row's best logits as the sampler ranks them (core/top_k.h): ties
// (equal values: the smaller index first), -inf, NaN (ranked as -inf), signed zeros, rows where
// the k-th value is shared by more entries than fit, k = 1 (greedy) up to kMaxTopLogits, a row
// as short as k, and vocabularies of odd sizes.
TEST(Ops, TopKRanksAsTheSampler) {
  std::mt19937 rng(81);
  for (auto [n, rows] : {std::pair<int64_t, int64_t>{32000, 3}, {151, 5}, {256, 2}, {50257, 1}}) {
    std::vector<float> x(static_cast<size_t>(n * rows));
    for (size_t i = 0; i < x.size(); ++i) {
      const int64_t r = static_cast<int64_t>(i) / n;
      float v = std::normal_distribution<float>(0.0f, 4.0f)(rng);
      if (r == 0) v = std::round(v);                  // many ties
      if (r == 1 && i % 3 == 0) v = -INFINITY;        // masked vocabulary
      if (r == 2) v = i % 5 == 0 ? 7.0f : v / 4.0f;  // the best (and the k-th) shared by many
      if (i % 97 == 0) v = std::nanf("");
      if (i % 89 == 0) v = i % 2 ? -0.0f : 0.0f;
      x[i] = v;
    }
    const TensorView t = TensorView::contiguous(x.data(), DType::F32, {n, rows});
    for (int k : {1, 2, 40, 256}) {
      if (k > n) continue;
      std::vector<float> want_v(static_cast<size_t>(k * rows));
      std::vector<int32_t> want_i(want_v.size());
      std::vector<ScoredId> work;
      for (int64_t r = 0; r < rows; ++r) {
        select_top_k(std::span<const float>(x.data() + r * n, static_cast<size_t>(n)), static_cast<size_t>(k), work);
        for (int j = 0; j < k; ++j) want_v[r * k + j] = work[j].value, want_i[r * k + j] = work[j].id;
      }
      for (auto& be : backends_under_test()) {
        std::vector<float> got_v(want_v.size(), 123.0f);
        std::vector<int32_t> got_i(want_i.size(), -7);
        be->top_k(t, k, got_v.data(), got_i.data());
        EXPECT_EQ(got_i, want_i) << be->name() << " n " << n << " k " << k;
        EXPECT_EQ(0, std::memcmp(got_v.data(), want_v.data(), got_v.size() * sizeof(float)))
            << be->name() << " n " << n << " k " << k;
      }
    }
  }
}

TEST(Ops, GetRowsAndShapeErrors) {
  auto table = random_weight(DType::Q8_0, 64, 10, 5);
  const auto tv = TensorView::contiguous(table.data(), DType::Q8_0, {64, 10});
  const int32_t ids[] = {9, 0, 3};
  Guarded out(64 * 3);
  auto ov = TensorView::contiguous(out.data(), DType::F32, {64, 3});
  for (auto& be : backends_under_test()) {
    be->get_rows(tv, ids, 3, ov);
    EXPECT_TRUE(out.guards_intact());
    std::vector<float> row(64);
    quant::dequantize_row(DType::Q8_0, table.data() + 9 * 68, row.data(), 64);
    for (int i = 0; i < 64; ++i) EXPECT_EQ(out.data()[i], row[i]);
    const int32_t bad[] = {10};
    EXPECT_THROW(be->get_rows(tv, bad, 1, TensorView::contiguous(out.data(), DType::F32, {64, 1})), Error);
    float x[64], y[5];
    EXPECT_THROW(be->matmul(tv, TensorView::contiguous(x, DType::F32, {32, 2}), TensorView::contiguous(y, DType::F32, {5, 1})),
                 Error);
  }
}

// A tied output head is the embedding table in the backend's matmul layout (repacked groups of
// eight rows on the CPU): gathering from that view gives the file's rows exactly, for every
// type the backend repacks, ids in any group and position, the last row included.
TEST(Ops, GetRowsFromPreparedTable) {
  const int32_t ids[] = {23, 0, 7, 8, 15, 16, 9};
  const int64_t n_ids = std::size(ids), n_rows = 24;
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                  DType::Q6_K}) {
    const int64_t n = 512;
    auto table = random_weight(t, n, n_rows, 21);
    const auto tv = TensorView::contiguous(table.data(), t, {n, n_rows});
    std::vector<float> expected(static_cast<size_t>(n * n_ids));
    ref::get_rows(tv, ids, n_ids, TensorView::contiguous(expected.data(), DType::F32, {n, n_ids}));
    for (auto& be : backends_under_test()) {
      const TensorView prepared = be->prepare_weight(tv);
      Guarded out(n * n_ids);
      be->get_rows(prepared, ids, n_ids, TensorView::contiguous(out.data(), DType::F32, {n, n_ids}));
      EXPECT_TRUE(out.guards_intact()) << dtype_name(t);
      EXPECT_EQ(0, std::memcmp(out.data(), expected.data(), expected.size() * sizeof(float)))
          << dtype_name(t) << " on " << be->name() << ", layout " << int(prepared.layout);
      const int32_t bad[] = {static_cast<int32_t>(n_rows)};
      EXPECT_THROW(be->get_rows(prepared, bad, 1, TensorView::contiguous(out.data(), DType::F32, {n, 1})), Error);
    }
  }
}
