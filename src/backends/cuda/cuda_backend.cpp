// The CUDA backend's host side: device memory, the staging of each pass's integer inputs, weight
// placement (Q4_0/Q4_1/Q8_0 rearranged into the split layout for aligned loads), the attention
// plan, the choice between the GEMV kernels and cuBLAS, and the launch queue that replays repeated
// passes as CUDA graphs. Kernels live in kernels/*.cu.
//
// Every launch goes through queue_: between begin_pass() and the pass's first copy to the host it
// is recorded (a closure over plain values: never over `this`, whose members change), then run.
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_module.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <utility>
#include <vector>

#include "backends/cuda/kernels/launch.h"
#include "backends/cuda/launch_queue.h"
#include "core/error.h"
#include "quant/quant.h"

namespace tern {

namespace cuda {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("cuda backend: {}: {}", what, cudaGetErrorString(e));
}

void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace cuda

namespace {

using cuda::check;

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("cuda backend: {}: cuBLAS status {}", what, static_cast<int>(s));
}

size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Zeroed on the backend's stream: a plain cudaMemset runs on the legacy stream, which a
// non-blocking stream does not wait for, and could land after the first writes to the buffer.
class DeviceBuffer final : public Buffer {
 public:
  DeviceBuffer(size_t bytes, cudaStream_t stream) {
    size_ = bytes;
    if (bytes == 0) return;
    const cudaError_t e = cudaMalloc(&data_, bytes);
    if (e != cudaSuccess) {
      size_t free = 0, total = 0;
      cudaMemGetInfo(&free, &total);
      fail("cuda backend: cannot allocate {} MiB of device memory ({} MiB free of {}): {}", bytes >> 20, free >> 20,
           total >> 20, cudaGetErrorString(e));
    }
    check(cudaMemsetAsync(data_, 0, bytes, stream), "clearing a new allocation");
  }
  ~DeviceBuffer() override {
    if (data_) cudaFree(data_);
  }
};

// Pinned host memory mirrored by device memory of the same size: what is written on the host side
// reaches the device with one asynchronous copy.
struct MirroredArena {
  uint8_t* host = nullptr;
  uint8_t* dev = nullptr;
  size_t capacity = 0;

  void reserve(size_t bytes) {
    if (bytes <= capacity) return;
    release();
    capacity = align_up(std::max<size_t>(bytes, 64 << 10), 64 << 10);
    check(cudaMallocHost(&host, capacity), "pinned staging memory");
    check(cudaMalloc(&dev, capacity), "device staging memory");
  }
  void release() {
    if (host) cudaFreeHost(host);
    if (dev) cudaFree(dev);
    host = dev = nullptr;
    capacity = 0;
  }
  ~MirroredArena() { release(); }
};

// Device scratch that grows to the largest size asked for (in the first passes; then never).
struct Scratch {
  void* p = nullptr;
  size_t bytes = 0;
  ~Scratch() {
    if (p) cudaFree(p);
  }
};

cuda::Weight weight_of(const TensorView& w) {
  return {.data = w.data, .type = w.dtype, .layout = w.layout, .n_in = w.ne[0], .n_out = w.nrows()};
}

bool graphs_enabled(const CudaBackendConfig& c) { return c.graphs && cuda::env_switch("TERN_CUDA_GRAPHS", true); }

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaBackendConfig& c)
      : exact_(c.exact_activations),
        flash_min_(c.flash_min_tokens > 0 ? c.flash_min_tokens : 16),
        gemm_min_(c.gemm_min_tokens > 0 ? c.gemm_min_tokens : 32),
        // TERN_CUDA_FUSE=0 runs the fused ops as their parts (add then rms_norm, rope twice, two KV
        // stores) and every matmul's rounding as a launch of its own: to measure what fusing saves.
        fuse_(cuda::env_switch("TERN_CUDA_FUSE", true)),
        stream_(make_stream(c.device)),
        queue_(stream_, graphs_enabled(c)) {
    check_blas(cublasCreate(&blas_), "creating the cuBLAS handle");
    check_blas(cublasSetStream(blas_, stream_), "cublasSetStream");
    cuda::prepare_kernels();  // attribute changes are not allowed while a graph is being captured
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    for (void* p : owned_) cudaFree(p);
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }

  std::string_view name() const override { return "cuda"; }
  Device device() const override { return Device::CUDA; }
  bool supports_weight(DType t) const override { return quant::is_weight_type(t); }

  std::unique_ptr<Buffer> alloc(size_t bytes) override { return std::make_unique<DeviceBuffer>(bytes, stream_); }

  size_t available_memory() const override {
    size_t free = 0, total = 0;
    check(cudaMemGetInfo(&free, &total), "querying free memory");
    return free;
  }

  void to_backend(void* dst, const void* src, size_t bytes) override {
    rounded_ = {};
    queue_.run();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "copy to the device");
    check(cudaStreamSynchronize(stream_), "copy to the device");
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    rounded_ = {};
    queue_.run();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "copy to the host");
    check(cudaStreamSynchronize(stream_), "copy to the host");
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    rounded_ = {};
    queue_.run();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "device copy");
  }

  void begin_pass(size_t bytes) override {
    rounded_ = {};
    queue_.run();
    check(cudaStreamSynchronize(stream_), "previous pass");  // its staged inputs may still be in flight
    stage_.reserve(bytes);
    staged_ = flushed_ = 0;
    plan_key_ = {};
    queue_.begin();
  }

  const void* stage(const void* host, size_t bytes) override {
    const size_t off = align_up(staged_, 256);
    TERN_CHECK(off + bytes <= stage_.capacity, "cuda backend: {} bytes staged beyond the {} announced by begin_pass",
               off + bytes, stage_.capacity);
    if (bytes) std::memcpy(stage_.host + off, host, bytes);
    staged_ = off + bytes;
    return stage_.dev + off;
  }

  // Tables gathered by get_rows may also be a matmul's W (tied embeddings): the same layouts.
  TensorView place_weight(const TensorView& w) override { return prepare_weight(w); }

  TensorView prepare_weight(const TensorView& w) override {
    TERN_CHECK(w.layout == 0, "cuda backend: a weight prepared by another backend");
    const size_t bytes = w.row_size() * static_cast<size_t>(w.nrows());
    max_weight_elems_ = std::max<size_t>(max_weight_elems_, static_cast<size_t>(w.ne[0] * w.nrows()));
    if (!cuda::has_split_layout(w.dtype) || w.ne[0] % 32 != 0) return upload(w, w.data, bytes, 0);
    std::vector<uint8_t> split(bytes);
    cuda::split_layout(w.dtype, static_cast<const uint8_t*>(w.data), w.ne[0], w.nrows(), split.data());
    return upload(w, split.data(), bytes, cuda::kSplitLayout);
  }

  void get_rows(const TensorView& table, const int32_t* ids, int64_t n, const TensorView& out) override {
    check_get_rows(table, n, out);
    on_device("get_rows", {&table, &out});
    rounded_ = {};
    const int32_t* host_ids = mirror(ids, n);
    for (int64_t i = 0; i < n; ++i)
      TERN_CHECK(host_ids[i] >= 0 && host_ids[i] < table.ne[1], "get_rows: id {} outside [0, {})", host_ids[i],
                 table.ne[1]);
    flush();
    const cuda::Weight t = weight_of(table);
    float* o = out.ptr<float>();
    queue_.launch([=](cudaStream_t s) { cuda::get_rows(t, ids, n, o, s); });
  }

  void rms_norm(const TensorView& x, const TensorView& w, float eps, const TensorView& out) override {
    check_rms_norm(x, w, out);
    on_device("rms_norm", {&x, &w, &out});
    flush();
    const float *xp = x.ptr<float>(), *wp = w.ptr<float>();
    float* o = out.ptr<float>();
    const int64_t n = x.ne[0], rows = x.nrows();
    const cuda::Activation r = rounded_output(out);
    queue_.launch([=](cudaStream_t s) { cuda::rms_norm(xp, wp, o, n, rows, eps, r, s); });
  }

  void add_rms_norm(const TensorView& x, const TensorView& d, const TensorView& w, float eps,
                    const TensorView& out) override {
    if (!fuse_) return Backend::add_rms_norm(x, d, w, eps, out);
    check_same_shape("add_rms_norm", x, d);
    check_rms_norm(x, w, out);
    on_device("add_rms_norm", {&x, &d, &w, &out});
    flush();
    float* xp = x.ptr<float>();
    const float *dp = d.ptr<float>(), *wp = w.ptr<float>();
    float* o = out.ptr<float>();
    const int64_t n = x.ne[0], rows = x.nrows();
    const cuda::Activation r = rounded_output(out);
    queue_.launch([=](cudaStream_t s) { cuda::add_rms_norm(xp, dp, wp, o, n, rows, eps, r, s); });
  }

  void matmul(const TensorView& w, const TensorView& x, const TensorView& y) override {
    matmul_group(std::span(&w, 1), x, std::span(&y, 1));
  }

  // Decode-sized batches: the input rounded once per run of weights that share type and layout (QKV,
  // gate and up) as the CPU rounds it (or kept f32, exact), then one GEMV launch for the run.
  // Prefill-sized batches: cuBLAS.
  void matmul_group(std::span<const TensorView> ws, const TensorView& x, std::span<const TensorView> ys) override {
    TERN_CHECK(ws.size() == ys.size() && !ws.empty(), "matmul_group: {} weights, {} outputs", ws.size(), ys.size());
    for (size_t i = 0; i < ws.size(); ++i) {
      check_matmul(ws[i], x, ys[i]);
      on_device("matmul", {&ws[i], &x, &ys[i]});
    }
    flush();
    Rounded fresh = std::exchange(rounded_, {});
    const int64_t n_tok = x.ne[1];
    if (n_tok >= gemm_min_) {
      for (size_t i = 0; i < ws.size(); ++i) gemm(ws[i], x, ys[i]);
      return;
    }
    for (size_t i = 0; i < ws.size();) {
      size_t e = i + 1;
      while (e < ws.size() && e - i < cuda::kMaxGemvWeights && ws[e].dtype == ws[i].dtype &&
             ws[e].layout == ws[i].layout)
        ++e;
      const cuda::Activation act = input_for(ws[i].dtype, x, fresh, i == 0);
      struct Group {
        cuda::Weight w[cuda::kMaxGemvWeights];
        float* y[cuda::kMaxGemvWeights];
      } g{};
      for (size_t k = i; k < e; ++k) g.w[k - i] = weight_of(ws[k]), g.y[k - i] = ys[k].ptr<float>();
      const int n = static_cast<int>(e - i);
      queue_.launch([=](cudaStream_t s) { cuda::gemv(g.w, g.y, n, act, n_tok, s); });
      i = e;
    }
  }

  // Decode-sized batches of F16/BF16/F32 weights: one GEMV launch that applies SwiGLU to each row
  // pair as it finishes (and rounds for the down projection); the rest as the two calls. The down
  // projection's rounding decides: 8-bit blocks need a whole 32-element unit of outputs, which no
  // warp of the GEMV has. (1.1B BF16 at batch 1 on an H200, with rope_qk_store and the skipped
  // attention merge: 1277 -> 1195 us of device time per step; Q8_0, which has only those two, 976
  // -> 965.)
  void matmul_swiglu(const TensorView& w_gate, const TensorView& w_up, const TensorView& x, const TensorView& gate,
                     const TensorView& up, std::span<const TensorView> next) override {
    const DType down = exact_ ? DType::F32 : learned_type(gate.data);
    if (!fuse_ || x.ne[1] >= gemm_min_ || w_gate.dtype != w_up.dtype || !cuda::glu_supports(w_gate.dtype) ||
        !same_shape(w_gate, w_up) || x.ne[0] % 32 != 0 || !cuda::glu_supports(down))
      return Backend::matmul_swiglu(w_gate, w_up, x, gate, up, next);
    check_matmul(w_gate, x, gate);
    check_matmul(w_up, x, up);
    check_same_shape("matmul_swiglu", gate, up);
    on_device("matmul_swiglu", {&w_gate, &w_up, &x, &gate, &up});
    flush();
    Rounded fresh = std::exchange(rounded_, {});
    const cuda::Activation act = input_for(w_gate.dtype, x, fresh, true);
    const cuda::Activation r = rounded_output(gate, glu_act_);
    const cuda::Weight wg = weight_of(w_gate), wu = weight_of(w_up);
    float* out = gate.ptr<float>();
    const int64_t n_tok = x.ne[1];
    queue_.launch([=](cudaStream_t s) { cuda::gemv_swiglu(wg, wu, out, act, n_tok, r, s); });
  }

  void rope(const TensorView& x, const int32_t* pos, const RopeParams& p) override {
    rope_both(x, nullptr, pos, p);
  }
  void rope_qk(const TensorView& q, const TensorView& k, const int32_t* pos, const RopeParams& p) override {
    if (!fuse_) return Backend::rope_qk(q, k, pos, p);
    rope_both(q, &k, pos, p);
  }

  void kv_store(const TensorView& src, const TensorView& cache, const int32_t* slots) override {
    store_kv(src, cache, nullptr, nullptr, slots);
  }
  void kv_store_kv(const TensorView& k, const TensorView& v, const TensorView& k_cache, const TensorView& v_cache,
                   const int32_t* slots) override {
    if (!fuse_ || !same_shape(k, v) || !same_shape(k_cache, v_cache) || k_cache.dtype != v_cache.dtype)
      return Backend::kv_store_kv(k, v, k_cache, v_cache, slots);
    store_kv(k, k_cache, &v, &v_cache, slots);
  }

  void rope_qk_store(const TensorView& q, const TensorView& k, const TensorView& v, const int32_t* pos,
                     const RopeParams& p, const TensorView& k_cache, const TensorView& v_cache,
                     const int32_t* slots) override {
    if (!fuse_ || !same_shape(k, v) || !same_shape(k_cache, v_cache) || k_cache.dtype != v_cache.dtype ||
        !(k_cache.dtype == DType::F16 || k_cache.dtype == DType::F32))
      return Backend::rope_qk_store(q, k, v, pos, p, k_cache, v_cache, slots);
    check_rope_pair(q, &k, p);
    check_kv_stores(k, k_cache, &v, &v_cache, slots);
    on_device("rope_qk_store", {&v});
    rounded_ = {};
    mirror(pos, q.ne[2]);
    flush();
    const float theta_scale = std::pow(p.theta_base, -2.0f / static_cast<float>(p.n_rot));
    float *qp = q.ptr<float>(), *kp = k.ptr<float>();
    const float* vp = v.ptr<float>();
    void *kc = k_cache.data, *vc = v_cache.data;
    const DType ct = k_cache.dtype;
    const int64_t d = q.ne[0], q_heads = q.ne[1], k_heads = k.ne[1], T = q.ne[2];
    const int n_rot = p.n_rot;
    const bool neox = p.layout == RopeLayout::NeoX;
    queue_.launch([=](cudaStream_t s) {
      cuda::rope_store(qp, kp, vp, pos, kc, vc, ct, slots, d, q_heads, k_heads, T, n_rot, theta_scale, neox, s);
    });
  }

  void attention(const AttentionArgs& a) override;

  void top_k(const TensorView& logits, int k, float* values, int32_t* ids) override {
    const auto [n, rows] = top_k_shape(logits, k, cuda::kMaxTopK);
    const size_t bytes = static_cast<size_t>(rows * k) * sizeof(float);
    auto* dv = static_cast<uint8_t*>(scratch(top_k_, 2 * bytes));
    const float* x = logits.ptr<float>();
    auto* out_v = reinterpret_cast<float*>(dv);
    auto* out_i = reinterpret_cast<int32_t*>(dv + bytes);
    queue_.launch([=](cudaStream_t s) { cuda::top_k(x, n, rows, k, out_v, out_i, s); });
    top_k_host_.resize(2 * bytes);
    to_host(top_k_host_.data(), dv, 2 * bytes);  // one copy for both halves
    std::memcpy(values, top_k_host_.data(), bytes);
    std::memcpy(ids, top_k_host_.data() + bytes, bytes);
  }

  void swiglu(const TensorView& gate, const TensorView& up, const TensorView& out) override {
    check_same_shape("swiglu", gate, up);
    check_same_shape("swiglu", gate, out);
    on_device("swiglu", {&gate, &up, &out});
    flush();
    const float *g = gate.ptr<float>(), *u = up.ptr<float>();
    float* o = out.ptr<float>();
    const int64_t n = gate.nelements();
    const cuda::Activation r = rounded_output(out);
    queue_.launch([=](cudaStream_t s) { cuda::swiglu(g, u, o, n, r, s); });
  }

  void add(const TensorView& a, const TensorView& b, const TensorView& out) override {
    check_same_shape("add", a, b);
    check_same_shape("add", a, out);
    on_device("add", {&a, &b, &out});
    rounded_ = {};
    flush();
    const float *ap = a.ptr<float>(), *bp = b.ptr<float>();
    float* o = out.ptr<float>();
    const int64_t n = a.nelements();
    queue_.launch([=](cudaStream_t s) { cuda::add(ap, bp, o, n, s); });
  }

 private:
  static bool same_shape(const TensorView& a, const TensorView& b) {
    return std::equal(std::begin(a.ne), std::end(a.ne), std::begin(b.ne));
  }

  // The checks of rope on q, and on k unless it is null.
  static void check_rope_pair(const TensorView& q, const TensorView* k, const RopeParams& p) {
    check_rope(q, p);
    on_device("rope", {&q});
    if (k) {
      check_rope(*k, p);
      on_device("rope", {k});
      TERN_CHECK(k->ne[0] == q.ne[0] && k->ne[2] == q.ne[2], "rope_qk: k [{}, {}] against q [{}, {}]", k->ne[0],
                 k->ne[2], q.ne[0], q.ne[2]);
    }
  }

  // rope on q, and on k in the same launch unless k is null.
  void rope_both(const TensorView& q, const TensorView* k, const int32_t* pos, const RopeParams& p) {
    check_rope_pair(q, k, p);
    rounded_ = {};
    mirror(pos, q.ne[2]);
    flush();
    const float theta_scale = std::pow(p.theta_base, -2.0f / static_cast<float>(p.n_rot));
    float* qp = q.ptr<float>();
    float* kp = k ? k->ptr<float>() : nullptr;
    const int64_t d = q.ne[0], q_heads = q.ne[1], k_heads = k ? k->ne[1] : 0, T = q.ne[2];
    const int n_rot = p.n_rot;
    const bool neox = p.layout == RopeLayout::NeoX;
    queue_.launch(
        [=](cudaStream_t s) { cuda::rope(qp, kp, pos, d, q_heads, k_heads, T, n_rot, theta_scale, neox, s); });
  }

  // src into cache, and src2 into cache2 in the same launch unless they are null (same shapes and
  // cache type, checked by the caller).
  void store_kv(const TensorView& src, const TensorView& cache, const TensorView* src2, const TensorView* cache2,
                const int32_t* slots) {
    check_kv_stores(src, cache, src2, cache2, slots);
    rounded_ = {};
    flush();
    const float* sp = src.ptr<float>();
    void* c = cache.data;
    const float* sp2 = src2 ? src2->ptr<float>() : nullptr;
    void* c2 = cache2 ? cache2->data : nullptr;
    const DType ct = cache.dtype;
    const int64_t d = src.ne[0], heads = src.ne[1], T = src.ne[2];
    queue_.launch([=](cudaStream_t s) { cuda::kv_store(sp, c, sp2, c2, ct, slots, d, heads, T, s); });
  }

  // The checks of kv_store(src, cache), and of src2 into cache2 unless they are null; the slots
  // (staged) must name slots of the cache.
  void check_kv_stores(const TensorView& src, const TensorView& cache, const TensorView* src2,
                       const TensorView* cache2, const int32_t* slots) const {
    check_kv_store(src, cache);
    TERN_CHECK(cache.dtype == DType::F16 || cache.dtype == DType::F32,
               "cuda backend: KV cache type {} not supported yet (f16, f32)", dtype_name(cache.dtype));
    on_device("kv_store", {&src, &cache});
    if (src2) {
      check_kv_store(*src2, *cache2);
      on_device("kv_store", {src2, cache2});
    }
    const int32_t* host_slots = mirror(slots, src.ne[2]);
    for (int64_t t = 0; t < src.ne[2]; ++t)
      TERN_CHECK(host_slots[t] >= 0 && host_slots[t] < cache.ne[2], "kv_store: slot {} outside the cache", host_slots[t]);
  }

  // The matmul input an element-wise op writes may be rounded by that op on the way (norms, SwiGLU:
  // cuda::round_into), saving the rounding launch of the matmul after it. Which type to round to
  // is what the last matmul that read the buffer asked for (learned on the first pass); the
  // rounding is kept for the next op only, and any other op drops it.
  struct Rounded {
    const void* x = nullptr;
    int64_t n_in = 0, n_tok = 0;
    cuda::Activation act;
  };

  void learn_input_type(const void* x, DType at) {
    for (auto& [p, t] : input_types_)
      if (p == x) {
        t = at;
        return;
      }
    if (input_types_.size() == kMaxInputTypes) input_types_.erase(input_types_.begin());
    input_types_.emplace_back(x, at);
  }

  // The input type the last matmul reading x asked for (F32 when none has).
  DType learned_type(const void* x) const {
    DType at = DType::F32;
    for (const auto& [p, t] : input_types_)
      if (p == x) at = t;
    return at;
  }

  // x as the GEMVs of weight type `type` take it: the rounding the op that wrote x left in `fresh`
  // (which is then used up), or a rounding launch of its own into act_, or x itself (exact, F32).
  // `learn`: note the type asked for, for the op that writes x next time.
  cuda::Activation input_for(DType type, const TensorView& x, Rounded& fresh, bool learn) {
    const float* xp = x.ptr<float>();
    const int64_t n_in = x.ne[0], n_tok = x.ne[1];
    const DType at = exact_ ? DType::F32 : quant::vec_dot_type(type);
    if (learn) learn_input_type(xp, at);
    if (at == DType::F32) return {.type = DType::F32, .q = xp, .n_in = n_in};
    if (fresh.x == xp && fresh.act.type == at && fresh.n_in == n_in && fresh.n_tok == n_tok) return fresh.act;
    const cuda::Activation act =
        cuda::activation_view(at, xp, n_in, n_tok, scratch(act_, cuda::activation_bytes(at, n_in, n_tok)));
    queue_.launch([=](cudaStream_t s) { cuda::quantize_activation(act, xp, n_tok, s); });
    fresh = {};  // act_ now holds this rounding
    return act;
  }

  // What an op writing `out` (rows of n elements) also writes rounded (type F32: nothing), into
  // `into`, and rounded_ set to it. An op that reads a rounded input itself (the GEMV with SwiGLU,
  // whose input is in act_) must round into another scratch: its blocks still reading the input
  // would see the outputs of the blocks done before them.
  cuda::Activation rounded_output(void* out, int64_t n, int64_t rows, Scratch& into) {
    rounded_ = {};
    if (exact_ || !fuse_ || rows >= gemm_min_) return {};
    const DType at = learned_type(out);
    const bool ok = at == DType::F16 || at == DType::BF16 || ((at == DType::Q8_0 || at == DType::Q8_1) && n % 32 == 0);
    if (!ok) return {};
    const cuda::Activation a = cuda::activation_view(at, static_cast<const float*>(out), n, rows,
                                                     scratch(into, cuda::activation_bytes(at, n, rows)));
    rounded_ = {out, n, rows, a};
    return a;
  }
  cuda::Activation rounded_output(const TensorView& out, Scratch& into) {
    return rounded_output(out.data, out.ne[0], out.nrows(), into);
  }
  cuda::Activation rounded_output(const TensorView& out) { return rounded_output(out, act_); }

  static cudaStream_t make_stream(int device) {
    const std::string why = cuda_module_unavailable_reason();
    TERN_CHECK(why.empty(), "cuda backend: {}", why);
    int n = 0;
    check(cudaGetDeviceCount(&n), "counting devices");
    TERN_CHECK(device >= 0 && device < n, "cuda backend: device {} does not exist ({} found)", device, n);
    check(cudaSetDevice(device), "selecting the device");
    cudaStream_t s = nullptr;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "creating a stream");
    return s;
  }

  TensorView upload(const TensorView& w, const void* src, size_t bytes, uint8_t layout) {
    void* p = nullptr;
    check(cudaMalloc(&p, std::max<size_t>(bytes, 1)), "weight memory");
    owned_.push_back(p);
    check(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice), "weight upload");
    TensorView d = w;
    d.data = p;
    d.device = Device::CUDA;
    d.layout = layout;
    return d;
  }

  // Every operand must be in this device's memory and contiguous (all activations are).
  static void on_device(const char* op, std::initializer_list<const TensorView*> ts) {
    for (const TensorView* t : ts) {
      TERN_CHECK(t->device == Device::CUDA, "{}: an operand is not in device memory", op);
      TERN_CHECK(t->layout != 0 || t->is_contiguous(), "{}: operands must be contiguous", op);
    }
  }

  // The host copy of n staged elements at `dev` (validation and planning read the batch there).
  template <class T>
  const T* mirror(const T* dev, int64_t n) const {
    const auto* p = reinterpret_cast<const uint8_t*>(dev);
    TERN_CHECK(p >= stage_.dev && p + n * sizeof(T) <= stage_.dev + staged_,
               "cuda backend: integer inputs must come from stage() in this pass");
    return reinterpret_cast<const T*>(stage_.host + (p - stage_.dev));
  }

  // Sends what was staged since the last flush. The copy is rounded up to 16 KiB so that passes
  // whose block tables differ by a few entries still record the same launch.
  void flush() {
    if (staged_ <= flushed_) return;
    const size_t end = std::min(align_up(staged_, 16 << 10), stage_.capacity);
    uint8_t* dst = stage_.dev + flushed_;
    const uint8_t* src = stage_.host + flushed_;
    const size_t n = end - flushed_;
    queue_.launch([=](cudaStream_t s) { check(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s), "staging"); });
    flushed_ = end;
  }

  // Device scratch of at least n bytes. Growing it first runs what was recorded (which may use the
  // old buffer) and waits for it.
  void* scratch(Scratch& sc, size_t n) {
    if (n > sc.bytes) {
      drain();
      if (sc.p) cudaFree(sc.p);
      sc.bytes = align_up(n, 1 << 20);
      check(cudaMalloc(&sc.p, sc.bytes), "scratch memory");
    }
    return sc.p;
  }

  // Runs what was recorded and waits for it, then goes on recording if a pass was being recorded:
  // for changes to buffers that recorded launches refer to.
  void drain() {
    const bool recording = queue_.recording();
    queue_.run();
    check(cudaStreamSynchronize(stream_), "draining the stream");
    if (recording) queue_.begin();
  }

  // Prefill-sized batches: cuBLAS on f16 (bf16 for bf16 weights, f32 for f32 weights) with f32
  // accumulation, quantised weights dequantised into a scratch matrix first. Not captured in graphs.
  void gemm(const TensorView& w, const TensorView& x, const TensorView& y) {
    const int n_in = static_cast<int>(w.ne[0]), n_out = static_cast<int>(w.ne[1]), T = static_cast<int>(x.ne[1]);
    const cublasHandle_t blas = blas_;
    const void *wp = w.data, *xp = x.data;
    void* yp = y.data;
    if (w.dtype == DType::F32) {
      queue_.launch(
          [=](cudaStream_t) {
            const float one = 1.0f, zero = 0.0f;
            check_blas(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, n_out, T, n_in, &one, wp, CUDA_R_32F, n_in, xp,
                                    CUDA_R_32F, n_in, &zero, yp, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT),
                       "f32 GEMM");
          },
          false);
      return;
    }
    const bool bf16 = w.dtype == DType::BF16;
    void* xh = scratch(x_half_, static_cast<size_t>(n_in) * T * 2);
    const void* a = wp;
    const cuda::Weight wt = weight_of(w);
    void* wh = nullptr;
    if (w.dtype != DType::F16 && !bf16) {
      wh = scratch(w_half_, std::max(max_weight_elems_, static_cast<size_t>(n_in) * n_out) * 2);
      a = wh;
    }
    const float* xf = x.ptr<float>();
    queue_.launch(
        [=](cudaStream_t s) {
          if (bf16) cuda::f32_to_bf16(xf, xh, static_cast<int64_t>(n_in) * T, s);
          else cuda::f32_to_f16(xf, xh, static_cast<int64_t>(n_in) * T, s);
          if (wh) cuda::dequant_f16(wt, wh, s);
          const float one = 1.0f, zero = 0.0f;
          const cudaDataType t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
          check_blas(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, n_out, T, n_in, &one, a, t, n_in, xh, t, n_in, &zero,
                                  yp, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     "f16 GEMM");
        },
        false);
  }

  const bool exact_;
  const int flash_min_, gemm_min_;
  const bool fuse_;
  cudaStream_t stream_ = nullptr;
  cuda::LaunchQueue queue_;
  cublasHandle_t blas_ = nullptr;
  std::vector<void*> owned_;  // weight copies
  size_t max_weight_elems_ = 0;
  MirroredArena stage_;
  size_t staged_ = 0, flushed_ = 0;
  Scratch x_half_, w_half_, partial_, act_, glu_act_, top_k_;
  std::vector<uint8_t> top_k_host_;
  Rounded rounded_;
  static constexpr size_t kMaxInputTypes = 16;
  std::vector<std::pair<const void*, DType>> input_types_;

  // The attention plan of the current pass (the same for every layer), built by the first call.
  struct PlanKey {
    const void *token_seq = nullptr, *token_pos = nullptr, *seqs = nullptr;
    int64_t n_tokens = 0;
    bool operator==(const PlanKey&) const = default;
  };
  PlanKey plan_key_;
  std::vector<cuda::FlashTile> tiles_;
  std::vector<cuda::DecodeItem> items_;
  int max_splits_ = 0;
  MirroredArena plan_;
  const cuda::FlashTile* dev_tiles_ = nullptr;
  const cuda::DecodeItem* dev_items_ = nullptr;
};

void CudaBackend::attention(const AttentionArgs& a) {
  check_attention(a);
  on_device("attention", {&a.q, &a.k, &a.v, &a.out});
  rounded_ = {};
  const int d = static_cast<int>(a.q.ne[0]);
  TERN_CHECK(cuda::decode_supports(d), "cuda attention: head size {} unsupported (64, 128, 256)", d);
  const int64_t T = a.q.ne[2];
  const cuda::AttnDims dims{.d = d,
                            .n_head = static_cast<int>(a.q.ne[1]),
                            .n_kv_head = static_cast<int>(a.k.ne[1]),
                            .block_size = a.block_size,
                            .scale = a.scale,
                            .cache_type = a.k.dtype};
  TERN_CHECK(a.k.dtype == DType::F16 || a.k.dtype == DType::F32,
             "cuda backend: KV cache type {} not supported yet (f16, f32)", dtype_name(a.k.dtype));
  const PlanKey key{a.token_seq, a.token_pos, a.seqs, T};
  if (!(key == plan_key_)) {
    // A second plan in one pass: what was recorded may still read the first from the pinned buffer.
    if (plan_key_.n_tokens != 0) drain();
    // Runs of consecutive positions of one sequence long enough to fill the tensor cores go to the
    // FlashAttention kernel in tiles; every other token to the split-KV decode kernel.
    const int32_t* seq_of = mirror(a.token_seq, T);
    const int32_t* pos_of = mirror(a.token_pos, T);
    const bool flash = cuda::flash_supports(d) && a.k.dtype == DType::F16;
    tiles_.clear();
    items_.clear();
    max_splits_ = 0;
    int64_t n_seqs = 0;
    for (int64_t t = 0; t < T; ++t) n_seqs = std::max<int64_t>(n_seqs, seq_of[t] + 1);
    const KvSeq* seqs = mirror(a.seqs, n_seqs);
    for (int64_t t = 0; t < T; ++t) {
      TERN_CHECK(seq_of[t] >= 0 && pos_of[t] >= 0 &&
                     pos_of[t] < static_cast<int64_t>(seqs[seq_of[t]].n_blocks) * a.block_size,
                 "attention: position {} beyond the sequence's {} blocks", pos_of[t], seqs[seq_of[t]].n_blocks);
    }
    for (int64_t t = 0; t < T;) {
      int64_t e = t + 1;
      while (e < T && seq_of[e] == seq_of[t] && pos_of[e] == pos_of[e - 1] + 1) ++e;
      if (flash && e - t >= flash_min_) {
        for (int64_t s = t; s < e; s += cuda::kFlashTileTokens)
          tiles_.push_back({static_cast<int32_t>(s), static_cast<int32_t>(std::min<int64_t>(cuda::kFlashTileTokens, e - s)),
                            seq_of[t], pos_of[s]});
        while (tiles_.size() % static_cast<size_t>(cuda::flash_tiles_per_block()) != 0)
          tiles_.push_back({0, 0, seq_of[t], 0});  // an empty tile: a block takes only this sequence's
      } else {
        for (int64_t s = t; s < e; ++s) {
          items_.push_back({static_cast<int32_t>(s), seq_of[s], pos_of[s] + 1, 0});
          max_splits_ = std::max(max_splits_, (pos_of[s] + cuda::kSplitPositions) / cuda::kSplitPositions);
        }
      }
      t = e;
    }
    const size_t tile_bytes = align_up(tiles_.size() * sizeof(cuda::FlashTile), 256);
    const size_t plan_bytes = tile_bytes + items_.size() * sizeof(cuda::DecodeItem);
    if (plan_bytes > plan_.capacity) {  // the recorded launches may still hold the old buffer
      drain();
      plan_.reserve(plan_bytes);
    }
    std::memcpy(plan_.host, tiles_.data(), tiles_.size() * sizeof(cuda::FlashTile));
    std::memcpy(plan_.host + tile_bytes, items_.data(), items_.size() * sizeof(cuda::DecodeItem));
    uint8_t* dst = plan_.dev;
    const uint8_t* src = plan_.host;
    queue_.launch([=](cudaStream_t s) { check(cudaMemcpyAsync(dst, src, plan_bytes, cudaMemcpyHostToDevice, s), "plan"); });
    dev_tiles_ = reinterpret_cast<const cuda::FlashTile*>(plan_.dev);
    dev_items_ = reinterpret_cast<const cuda::DecodeItem*>(plan_.dev + tile_bytes);
    plan_key_ = key;
  }
  flush();
  const float* q = a.q.ptr<float>();
  const void *k = a.k.data, *v = a.v.data;
  float* out = a.out.ptr<float>();
  const KvSeq* seqs = a.seqs;
  const cuda::FlashTile* tiles = dev_tiles_;
  const cuda::DecodeItem* items = dev_items_;
  const int n_tiles = static_cast<int>(tiles_.size()), n_items = static_cast<int>(items_.size());
  const int max_splits = max_splits_;
  if (n_tiles > 0)
    queue_.launch([=](cudaStream_t s) { cuda::flash_attention(q, k, v, out, seqs, tiles, n_tiles, dims, s); });
  if (n_items > 0) {
    auto* partial = static_cast<float*>(
        scratch(partial_, cuda::decode_partial_floats(n_items, max_splits, dims) * sizeof(float)));
    // Every token a decode item: the merge also rounds the output for the projection after it.
    const cuda::Activation r =
        n_tiles == 0 ? rounded_output(a.out.data, a.q.ne[0] * a.q.ne[1], T, act_) : cuda::Activation{};
    queue_.launch([=](cudaStream_t s) {
      cuda::decode_attention(q, k, v, out, seqs, items, n_items, max_splits, partial, dims, r, s);
    });
  }
}

}  // namespace

std::string cuda_module_unavailable_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(e) + ")";
  if (n == 0) return "no CUDA device found";
  return "";
}

std::unique_ptr<Backend> cuda_module_make_backend(const CudaBackendConfig& config) {
  return std::make_unique<CudaBackend>(config);
}

}  // namespace tern
