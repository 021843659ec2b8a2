// The interface every backend implements (scalar reference, CPU SIMD, CUDA). Models are written
// against it, so a forward pass runs unchanged on any backend.
//
// Memory: every tensor an op touches lives where the backend computes (host memory for the CPU
// backends, device memory for CUDA). Models and the KV cache take their buffers from alloc(),
// weights go through place_weight()/prepare_weight(), and the small integer arrays of one forward
// pass (token ids, positions, KV slots, block tables) through stage(). On the host backends all of
// these are the identity or plain host memory, so the CPU path copies nothing.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>
#include <utility>

#include "ops/ops.h"

namespace tern {

// A block of the backend's memory, zero-filled, released with the object.
class Buffer {
 public:
  virtual ~Buffer() = default;
  void* data() const { return data_; }
  size_t size() const { return size_; }

 protected:
  void* data_ = nullptr;
  size_t size_ = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual bool supports_weight(DType t) const = 0;

  // Where this backend's tensors live; CPU means ordinary host pointers.
  virtual Device device() const { return Device::CPU; }
  // Default: an anonymous host mapping whose pages are committed when first written, so a large
  // budget (the KV pool) costs memory only as far as it is used.
  virtual std::unique_ptr<Buffer> alloc(size_t bytes);
  // Bytes a new allocation could take now (the KV budget's base). Default: the host's MemAvailable.
  virtual size_t available_memory() const;
  // Copies between host memory and the backend's, and within the backend's. Default: memcpy.
  virtual void to_backend(void* dst, const void* src, size_t bytes);
  virtual void to_host(void* dst, const void* src, size_t bytes);
  virtual void copy(void* dst, const void* src, size_t bytes);
  // The integer inputs of one forward pass. begin_pass(bytes) says how much stage() will be asked
  // for before the next begin_pass; stage() returns a copy the ops can read, valid until then.
  // Host backends return `host` itself (the caller keeps it alive through the pass).
  virtual void begin_pass(size_t bytes) {}
  virtual const void* stage(const void* host, size_t bytes) { return host; }
  template <class T>
  const T* stage(std::span<const T> host) {
    return static_cast<const T*>(stage(host.data(), host.size_bytes()));
  }
  // A weight that is not a matmul's W (norm vectors, the embedding table): the backend's copy,
  // owned by it for its lifetime. Default: w itself (the mapped file).
  virtual TensorView place_weight(const TensorView& w) { return w; }

  // out[:, i] = dequant(table[:, ids[i]])                    table [n_embd, n_rows], out [n_embd, n]
  // The table may be a view this backend's prepare_weight returned (a tied output head).
  virtual void get_rows(const TensorView& table, const int32_t* ids, int64_t n, const TensorView& out) = 0;
  // out = x / rms(x) * w, per row                             x, out [n, rows], w F32 [n]
  virtual void rms_norm(const TensorView& x, const TensorView& w, float eps, const TensorView& out) = 0;
  // Called once per weight used as a matmul's W: a backend may return a view of its own copy in a
  // layout of its choosing (repacked rows), which it then owns for its lifetime. Default: w.
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
  // rope(q) and rope(k) at the same positions as one op: a backend may compute each position's
  // angles once for both and save a dispatch. Same results as the two calls.
  virtual void rope_qk(const TensorView& q, const TensorView& k, const int32_t* pos, const RopeParams& p) {
    rope(q, pos, p);
    rope(k, pos, p);
  }
  // cache[:, :, slots[t]] = src[:, :, t] (converted)           src [head_dim, n_kv_head, T]
  virtual void kv_store(const TensorView& src, const TensorView& cache, const int32_t* slots) = 0;
  // A layer's k and v stored at the same slots as one op: a backend may save a dispatch. Same
  // results as the two calls.
  virtual void kv_store_kv(const TensorView& k, const TensorView& v, const TensorView& k_cache,
                           const TensorView& v_cache, const int32_t* slots) {
    kv_store(k, k_cache, slots);
    kv_store(v, v_cache, slots);
  }
  // rope_qk(q, k) and then kv_store_kv(k, v) (k as rotated) as one op: a backend may store each
  // rotated pair as it computes it and save a dispatch. Same results as the two calls.
  virtual void rope_qk_store(const TensorView& q, const TensorView& k, const TensorView& v, const int32_t* pos,
                             const RopeParams& p, const TensorView& k_cache, const TensorView& v_cache,
                             const int32_t* slots) {
    rope_qk(q, k, pos, p);
    kv_store_kv(k, v, k_cache, v_cache, slots);
  }
  // Causal softmax(q k^T * scale) v over each token's sequence, grouped-query heads.
  virtual void attention(const AttentionArgs& a) = 0;
  // The k best values of each column of `logits` ([n, rows], F32) with their indices, in the order
  // sampling ranks them (core/top_k.h), into host arrays values and ids ([rows][k]); 0 < k <= n. A
  // sampler with top-k needs no more of a row, and a GPU then sends back 8k bytes per row instead
  // of 4n. Default: on the host (the rows copied there first, for a device backend).
  virtual void top_k(const TensorView& logits, int k, float* values, int32_t* ids);
  // top_k's checks (contiguous F32, 0 < k <= min(n, max_k)); returns {n, rows}.
  static std::pair<int64_t, int64_t> top_k_shape(const TensorView& logits, int k, int64_t max_k);
  // out = silu(gate) * up
  virtual void swiglu(const TensorView& gate, const TensorView& up, const TensorView& out) = 0;
  // out = a + b (out may alias a)
  virtual void add(const TensorView& a, const TensorView& b, const TensorView& out) = 0;
  // The residual add and the norm after it as one op: x += d, then out = rms_norm(x) * w, row by
  // row (out may alias d). A backend may do both in one pass over each row and one dispatch
  // instead of two. Same results as add(x, d, x) then rms_norm(x, w, eps, out).
  virtual void add_rms_norm(const TensorView& x, const TensorView& d, const TensorView& w, float eps,
                            const TensorView& out) {
    add(x, d, x);
    rms_norm(x, w, eps, out);
  }
  // rms_norm and add_rms_norm whose output is the input of the very next call on this backend,
  // matmul_group(next, out, ...): a backend may also round `out` for those weights' dot products
  // (see ops.h, Numerics) while each row is in cache, and that matmul_group then skip its own pass
  // over `out`. Same results as the plain calls. Default: the plain calls.
  virtual void rms_norm_for(const TensorView& x, const TensorView& w, float eps, const TensorView& out,
                            std::span<const TensorView> next) {
    rms_norm(x, w, eps, out);
  }
  virtual void add_rms_norm_for(const TensorView& x, const TensorView& d, const TensorView& w, float eps,
                                const TensorView& out, std::span<const TensorView> next) {
    add_rms_norm(x, d, w, eps, out);
  }
  // swiglu whose output is the input of the very next call, matmul_group(next, out, ...) (the down
  // projection): as rms_norm_for.
  virtual void swiglu_for(const TensorView& gate, const TensorView& up, const TensorView& out,
                          std::span<const TensorView> next) {
    swiglu(gate, up, out);
  }
  // The feed-forward's first half as one op: gate = silu(w_gate x) * (w_up x), up a scratch of the
  // same shape (its contents afterwards unspecified), `next` as in swiglu_for. A backend may apply
  // SwiGLU as each pair of rows finishes and never write the two products. Same results in gate as
  // matmul_group({w_gate, w_up}, x, {gate, up}) then swiglu_for(gate, up, gate, next) (the default).
  virtual void matmul_swiglu(const TensorView& w_gate, const TensorView& w_up, const TensorView& x,
                             const TensorView& gate, const TensorView& up, std::span<const TensorView> next) {
    const TensorView w[] = {w_gate, w_up}, y[] = {gate, up};
    matmul_group(w, x, y);
    swiglu_for(gate, up, gate, next);
  }
};

}  // namespace tern
