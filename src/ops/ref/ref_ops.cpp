#include "ops/ref/ref_ops.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "core/fp8.h"
#include "quant/quant.h"

namespace tern::ref {
namespace {

float* frow(const TensorView& t, int64_t i1, int64_t i2 = 0, int64_t i3 = 0) {
  return static_cast<float*>(t.row(i1, i2, i3));
}

// A cache row (head_dim values of one KV head at one slot) as floats.
void load_cache_row(const TensorView& c, const void* p, std::vector<double>& out) {
  const int64_t d = c.ne[0];
  out.resize(static_cast<size_t>(d));
  if (c.dtype == DType::F32 || c.dtype == DType::F16) {
    for (int64_t i = 0; i < d; ++i)
      out[i] = c.dtype == DType::F16 ? fp16_to_f32(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
  } else if (c.dtype == DType::F8_E4M3) {
    for (int64_t i = 0; i < d; ++i) out[i] = fp8_e4m3_to_f32(static_cast<const uint8_t*>(p)[i]);
  } else {
    thread_local std::vector<float> f;
    f.resize(static_cast<size_t>(d));
    quant::dequantize_row(c.dtype, p, f.data(), d);
    std::copy(f.begin(), f.end(), out.begin());
  }
}

}  // namespace

void get_rows(const TensorView& table, const int32_t* ids, int64_t n, const TensorView& out) {
  check_get_rows(table, n, out);
  for (int64_t i = 0; i < n; ++i) {
    TERN_CHECK(ids[i] >= 0 && ids[i] < table.ne[1], "get_rows: id {} outside [0, {})", ids[i], table.ne[1]);
    quant::dequantize_row(table.dtype, table.row(ids[i]), frow(out, i), table.ne[0]);
  }
}

void rms_norm(const TensorView& x, const TensorView& w, float eps, const TensorView& out) {
  check_rms_norm(x, w, out);
  const int64_t n = x.ne[0];
  for (int64_t r = 0; r < x.nrows(); ++r) {
    const float* xr = frow(x, r);
    // ggml's rounding steps (f32 squares summed in double, f32 mean, 1/sqrtf), then the weight as
    // a separate multiply: a last-bit difference here can flip an 8-bit activation level downstream.
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(xr[i] * xr[i]);
    const float mean = static_cast<float>(ss / static_cast<double>(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    float* o = frow(out, r);
    for (int64_t i = 0; i < n; ++i) o[i] = (xr[i] * scale) * w.ptr<float>()[i];
  }
}

void matmul(const TensorView& w, const TensorView& x, const TensorView& y, bool exact_activations) {
  check_matmul(w, x, y);
  const int64_t n_in = w.ne[0];
  if (exact_activations) {
    std::vector<float> w_row(static_cast<size_t>(n_in));
    for (int64_t j = 0; j < w.ne[1]; ++j) {
      quant::dequantize_row(w.dtype, w.row(j), w_row.data(), n_in);
      for (int64_t t = 0; t < x.ne[1]; ++t) {
        const float* xr = frow(x, t);
        double acc = 0;
        for (int64_t i = 0; i < n_in; ++i) acc += static_cast<double>(w_row[i]) * xr[i];
        frow(y, t)[j] = static_cast<float>(acc);
      }
    }
    return;
  }
  const DType at = quant::vec_dot_type(w.dtype);
  const size_t a_bytes = row_bytes(at, n_in);
  std::vector<uint8_t> xq(a_bytes * static_cast<size_t>(x.ne[1]));
  for (int64_t t = 0; t < x.ne[1]; ++t) quant::quantize_activation_row(at, frow(x, t), xq.data() + t * a_bytes, n_in);
  for (int64_t j = 0; j < w.ne[1]; ++j)
    for (int64_t t = 0; t < x.ne[1]; ++t) frow(y, t)[j] = quant::vec_dot(w.dtype, w.row(j), xq.data() + t * a_bytes, n_in);
}

void rope(const TensorView& x, const int32_t* pos, const RopeParams& p) {
  check_rope(x, p);
  const int64_t half = p.n_rot / 2;
  // theta_i = pos * base^(-2i/n_rot). ggml steps it by float multiplication rather than calling pow
  // per element; doing the same keeps our angles bit-identical to the peer's.
  const float theta_scale = std::pow(p.theta_base, -2.0f / static_cast<float>(p.n_rot));
  for (int64_t t = 0; t < x.ne[2]; ++t) {
    for (int64_t h = 0; h < x.ne[1]; ++h) {
      float* v = frow(x, h, t);
      float theta = static_cast<float>(pos[t]);
      for (int64_t i = 0; i < half; ++i, theta *= theta_scale) {
        const float c = std::cos(theta), s = std::sin(theta);
        const int64_t i0 = p.layout == RopeLayout::Normal ? 2 * i : i;
        const int64_t i1 = p.layout == RopeLayout::Normal ? 2 * i + 1 : i + half;
        const float a = v[i0], b = v[i1];
        // The peer's compiler contracts a*c - b*s into fma(a, c, -(b*s)) (and likewise the second
        // line); matching that keeps q and k bit-identical to llama.cpp's (checked with
        // scripts/diff-llamacpp-layers).
        v[i0] = std::fma(a, c, -(b * s));
        v[i1] = std::fma(a, s, b * c);
      }
    }
  }
}

void kv_store(const TensorView& src, const TensorView& cache, const int32_t* slots) {
  check_kv_store(src, cache);
  for (int64_t t = 0; t < src.ne[2]; ++t) {
    TERN_CHECK(slots[t] >= 0 && slots[t] < cache.ne[2], "kv_store: slot {} outside the cache", slots[t]);
    for (int64_t h = 0; h < src.ne[1]; ++h) {
      const float* s = frow(src, h, t);
      void* d = cache.row(h, slots[t]);
      if (cache.dtype == DType::F16) {
        for (int64_t i = 0; i < src.ne[0]; ++i) static_cast<uint16_t*>(d)[i] = f32_to_fp16(s[i]);
      } else if (cache.dtype == DType::F8_E4M3) {
        for (int64_t i = 0; i < src.ne[0]; ++i) static_cast<uint8_t*>(d)[i] = f32_to_fp8_e4m3(s[i]);
      } else if (cache.dtype == DType::F32) {
        std::memcpy(d, s, src.ne[0] * sizeof(float));
      } else {  // Q8_0: per-block scales, the format's own rounding
        quant::quantize_row(cache.dtype, s, d, src.ne[0]);
      }
    }
  }
}

void attention_tokens(const AttentionArgs& a, int64_t t0, int64_t t1, bool exact) {
  const int64_t d = a.q.ne[0], n_head = a.q.ne[1], group = n_head / a.k.ne[1];
  // The peer's rounding: q meets the f16 keys as f16 (llama.cpp converts it to the cache's type for
  // the dot product). Exact mode keeps it in full precision. llama.cpp's non-flash path also rounds
  // the normalised softmax weights to f16 before they meet V; tern does not (a flash kernel never
  // has normalised weights), and the greedy agreement with the peer is no worse for it (see
  // tests/python/test_llamacpp_parity.py).
  const auto round_q = [exact](DType cache, double v) {
    return exact || cache != DType::F16 ? v : static_cast<double>(fp16_to_f32(f32_to_fp16(static_cast<float>(v))));
  };
  // Per-thread scratch, grown once: the CPU backend runs this inside every decode step.
  thread_local std::vector<double> scores, q, acc, row;
  q.resize(static_cast<size_t>(d));
  acc.resize(static_cast<size_t>(d));
  for (int64_t t = t0; t < t1; ++t) {
    const KvSeq& seq = a.seqs[a.token_seq[t]];
    const int64_t n_kv = a.token_pos[t] + 1;
    TERN_CHECK(n_kv <= static_cast<int64_t>(seq.n_blocks) * a.block_size,
               "attention: position {} beyond the sequence's {} blocks", a.token_pos[t], seq.n_blocks);
    scores.resize(static_cast<size_t>(n_kv));
    for (int64_t h = 0; h < n_head; ++h) {
      for (int64_t i = 0; i < d; ++i) q[i] = round_q(a.k.dtype, frow(a.q, h, t)[i]);
      const int64_t kvh = h / group;
      double mx = -INFINITY;
      for (int64_t p = 0; p < n_kv; ++p) {
        load_cache_row(a.k, a.k.row(kvh, kv_slot(seq, a.block_size, p)), row);
        double s = 0;
        for (int64_t i = 0; i < d; ++i) s += q[i] * row[i];
        scores[p] = s * a.scale;
        mx = std::max(mx, scores[p]);
      }
      double sum = 0;
      for (int64_t p = 0; p < n_kv; ++p) sum += (scores[p] = std::exp(scores[p] - mx));
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t p = 0; p < n_kv; ++p) {
        const double w = scores[p] / sum;
        load_cache_row(a.v, a.v.row(kvh, kv_slot(seq, a.block_size, p)), row);
        for (int64_t i = 0; i < d; ++i) acc[i] += w * row[i];
      }
      float* o = frow(a.out, h, t);
      for (int64_t i = 0; i < d; ++i) o[i] = static_cast<float>(acc[i]);
    }
  }
}

void attention(const AttentionArgs& a, bool exact) {
  check_attention(a);
  attention_tokens(a, 0, a.q.ne[2], exact);
}

void swiglu(const TensorView& gate, const TensorView& up, const TensorView& out) {
  check_same_shape("swiglu", gate, up);
  check_same_shape("swiglu", gate, out);
  for (int64_t r = 0; r < gate.nrows(); ++r) {
    const float *g = frow(gate, r), *u = frow(up, r);
    float* o = frow(out, r);
    for (int64_t i = 0; i < gate.ne[0]; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

void add(const TensorView& a, const TensorView& b, const TensorView& out) {
  check_same_shape("add", a, b);
  check_same_shape("add", a, out);
  for (int64_t r = 0; r < a.nrows(); ++r) {
    const float *x = frow(a, r), *y = frow(b, r);
    float* o = frow(out, r);
    for (int64_t i = 0; i < a.ne[0]; ++i) o[i] = x[i] + y[i];
  }
}

namespace {
class RefBackend final : public Backend {
 public:
  explicit RefBackend(bool exact) : exact_(exact) {}
  std::string_view name() const override { return "ref"; }
  bool supports_weight(DType t) const override { return quant::is_weight_type(t); }
  void get_rows(const TensorView& table, const int32_t* ids, int64_t n, const TensorView& out) override {
    ref::get_rows(table, ids, n, out);
  }
  void rms_norm(const TensorView& x, const TensorView& w, float eps, const TensorView& out) override {
    ref::rms_norm(x, w, eps, out);
  }
  void matmul(const TensorView& w, const TensorView& x, const TensorView& y) override { ref::matmul(w, x, y, exact_); }
  void rope(const TensorView& x, const int32_t* pos, const RopeParams& p) override { ref::rope(x, pos, p); }
  void kv_store(const TensorView& src, const TensorView& cache, const int32_t* slots) override {
    ref::kv_store(src, cache, slots);
  }
  void attention(const AttentionArgs& a) override { ref::attention(a, exact_); }
  void swiglu(const TensorView& g, const TensorView& u, const TensorView& o) override { ref::swiglu(g, u, o); }
  void add(const TensorView& a, const TensorView& b, const TensorView& o) override { ref::add(a, b, o); }

 private:
  bool exact_;
};
}  // namespace

std::unique_ptr<Backend> make_backend(bool exact_activations) { return std::make_unique<RefBackend>(exact_activations); }

}  // namespace tern::ref
