#include "backends/cpu/cpu_backend.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "backends/cpu/kernels/kernels.h"
#include "core/thread_pool.h"
#include "ops/ref/ref_ops.h"
#include "quant/quant.h"

namespace tern {
namespace {

// Sub-view of rows [r0, r1) of dimension `dim`.
TensorView slice(const TensorView& t, int dim, int64_t r0, int64_t r1) {
  TensorView s = t;
  s.data = static_cast<char*>(t.data) + r0 * t.nb[dim];
  s.ne[dim] = r1 - r0;
  return s;
}

// Per-thread scratch that grows to the largest size seen and is then reused: no allocation once
// the first forward pass has run.
template <typename T>
T* scratch(std::vector<T>& buf, size_t n) {
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Dot product of two float rows with 8 independent partial sums (vectorisable, fixed order).
float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendConfig& c)
      : pool_(c.n_threads > 0 ? c.n_threads : default_thread_count()),
        exact_(c.exact_activations),
        isa_(c.isa ? *c.isa : cpu::selected_isa()) {
    TERN_CHECK(cpu::isa_supported(isa_), "cpu backend: this CPU cannot run the {} kernels", cpu::isa_name(isa_));
  }

  std::string_view name() const override { return "cpu"; }
  bool supports_weight(DType t) const override { return quant::is_weight_type(t); }

  void get_rows(const TensorView& table, const int32_t* ids, int64_t n, const TensorView& out) override {
    ref::get_rows(table, ids, n, out);
  }

  void rms_norm(const TensorView& x, const TensorView& w, float eps, const TensorView& out) override {
    check_rms_norm(x, w, out);
    pool_.parallel_for(x.ne[1], [&](int64_t a, int64_t b) { ref::rms_norm(slice(x, 1, a, b), w, eps, slice(out, 1, a, b)); });
  }

  void matmul(const TensorView& w, const TensorView& x, const TensorView& y) override {
    check_matmul(w, x, y);
    if (exact_) return matmul_exact(w, x, y);
    // Quantise each activation row once to the weight's dot type, then every weight row against all
    // of them with the ISA variant's dot product (ggml's arithmetic up to summation order).
    const int64_t n_in = x.ne[0], n_tok = x.ne[1];
    const DType at = quant::vec_dot_type(w.dtype);
    const size_t a_bytes = row_bytes(at, n_in);
    uint8_t* xq = scratch(x_quantized_, a_bytes * static_cast<size_t>(n_tok));
    pool_.parallel_for(n_tok, [&](int64_t a, int64_t b) {
      for (int64_t t = a; t < b; ++t)
        quant::quantize_activation_row(at, static_cast<const float*>(x.row(t)), xq + t * a_bytes, n_in);
    });
    const cpu::VecDotFn dot = cpu::vec_dot_for(isa_, w.dtype);
    pool_.parallel_for(w.ne[1], [&](int64_t a, int64_t b) {
      for (int64_t j = a; j < b; ++j)
        for (int64_t t = 0; t < n_tok; ++t) static_cast<float*>(y.row(t))[j] = dot(w.row(j), xq + t * a_bytes, n_in);
    });
  }

  void rope(const TensorView& x, const int32_t* pos, const RopeParams& p) override {
    check_rope(x, p);
    pool_.parallel_for(x.ne[2], [&](int64_t a, int64_t b) { ref::rope(slice(x, 2, a, b), pos + a, p); });
  }

  void kv_store(const TensorView& src, const TensorView& cache, const int32_t* slots) override {
    ref::kv_store(src, cache, slots);
  }

  void attention(const AttentionArgs& a) override {
    check_attention(a);
    pool_.parallel_for(a.q.ne[2], [&](int64_t t0, int64_t t1) { ref::attention_tokens(a, t0, t1, exact_); });
  }

  void swiglu(const TensorView& g, const TensorView& u, const TensorView& o) override {
    check_same_shape("swiglu", g, u);
    pool_.parallel_for(g.ne[1], [&](int64_t a, int64_t b) {
      ref::swiglu(slice(g, 1, a, b), slice(u, 1, a, b), slice(o, 1, a, b));
    });
  }

  void add(const TensorView& a, const TensorView& b, const TensorView& o) override { ref::add(a, b, o); }

 private:
  // f32 activations against dequantised weight rows (exact mode).
  void matmul_exact(const TensorView& w, const TensorView& x, const TensorView& y) {
    const int64_t n_in = x.ne[0];
    pool_.parallel_for(w.ne[1], [&](int64_t a, int64_t b) {
      thread_local std::vector<float> w_row;
      float* wr = scratch(w_row, static_cast<size_t>(n_in));
      for (int64_t j = a; j < b; ++j) {
        quant::dequantize_row(w.dtype, w.row(j), wr, n_in);
        for (int64_t t = 0; t < x.ne[1]; ++t)
          static_cast<float*>(y.row(t))[j] = dot_f32(wr, static_cast<const float*>(x.row(t)), n_in);
      }
    });
  }

  ThreadPool pool_;
  bool exact_;
  cpu::Isa isa_;
  std::vector<uint8_t> x_quantized_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendConfig& config) {
  return std::make_unique<CpuBackend>(config);
}

}  // namespace tern
