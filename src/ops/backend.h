// The interface every backend implements (scalar reference, CPU SIMD, CUDA). Models are written
// against it, so a forward pass runs unchanged on any backend.
#pragma once

#include <span>
#include <string_view>

#include "ops/ops.h"

namespace tern {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual bool supports_weight(DType t) const = 0;

  // out[:, i] = dequant(table[:, ids[i]])                    table [n_embd, n_rows], out [n_embd, n]
  virtual void get_rows(const TensorView& table, const int32_t* ids, int64_t n, const TensorView& out) = 0;
  // out = x / rms(x) * w, per row                             x, out [n, rows], w F32 [n]
  virtual void rms_norm(const TensorView& x, const TensorView& w, float eps, const TensorView& out) = 0;
  // Called once per weight used only as a matmul's W: a backend may return a view of its own copy
  // in a layout of its choosing (repacked rows), which it then owns for its lifetime. Default: w.
  virtual TensorView prepare_weight(const TensorView& w) { return w; }
  // y = W x: y[j, t] = sum_i w[i, j] x[i, t]                   w [n_in, n_out], x [n_in, T], y [n_out, T]
  virtual void matmul(const TensorView& w, const TensorView& x, const TensorView& y) = 0;
  // y[i] = w[i] x for weights that share one input (q/k/v, gate/up): a backend may quantise x once
  // and split all the rows over its threads as one job. Same shapes as matmul, per i.
  virtual void matmul_group(std::span<const TensorView> w, const TensorView& x, std::span<const TensorView> y) {
    for (size_t i = 0; i < w.size(); ++i) matmul(w[i], x, y[i]);
  }
  // Rotary embedding in place; pos[t] is token t's position.  x [head_dim, n_heads, T]
  virtual void rope(const TensorView& x, const int32_t* pos, const RopeParams& p) = 0;
  // cache[:, :, slots[t]] = src[:, :, t] (converted)           src [head_dim, n_kv_head, T]
  virtual void kv_store(const TensorView& src, const TensorView& cache, const int32_t* slots) = 0;
  // Causal softmax(q k^T * scale) v over each token's sequence, grouped-query heads.
  virtual void attention(const AttentionArgs& a) = 0;
  // out = silu(gate) * up
  virtual void swiglu(const TensorView& gate, const TensorView& up, const TensorView& out) = 0;
  // out = a + b (out may alias a)
  virtual void add(const TensorView& a, const TensorView& b, const TensorView& out) = 0;
};

}  // namespace tern
