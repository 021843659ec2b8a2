// The CUDA backend's host side: device memory, the staging of each pass's integer inputs, weight
// placement (Q4_0/Q4_1/Q8_0 rearranged into the split layout for aligned loads), the attention plan,
// and the choice between the GEMV kernels and cuBLAS. Kernels live in kernels/*.cu.
#include "backends/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backends/cuda/kernels/launch.h"
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

class DeviceBuffer final : public Buffer {
 public:
  explicit DeviceBuffer(size_t bytes) {
    size_ = bytes;
    if (bytes == 0) return;
    const cudaError_t e = cudaMalloc(&data_, bytes);
    if (e != cudaSuccess) {
      size_t free = 0, total = 0;
      cudaMemGetInfo(&free, &total);
      fail("cuda backend: cannot allocate {} MiB of device memory ({} MiB free of {}): {}", bytes >> 20, free >> 20,
           total >> 20, cudaGetErrorString(e));
    }
    check(cudaMemset(data_, 0, bytes), "clearing a new allocation");
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

// Device scratch that grows to the largest size asked for (the first passes; then never again).
struct Scratch {
  void* p = nullptr;
  size_t bytes = 0;
  void* get(size_t n, cudaStream_t s) {
    if (n > bytes) {
      check(cudaStreamSynchronize(s), "growing scratch");  // earlier kernels may still read the old one
      if (p) cudaFree(p);
      bytes = align_up(n, 1 << 20);
      check(cudaMalloc(&p, bytes), "scratch memory");
    }
    return p;
  }
  ~Scratch() {
    if (p) cudaFree(p);
  }
};

cuda::Weight weight_of(const TensorView& w) {
  return {.data = w.data, .type = w.dtype, .layout = w.layout, .n_in = w.ne[0], .n_out = w.nrows()};
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaBackendConfig& c)
      : flash_min_(c.flash_min_tokens > 0 ? c.flash_min_tokens : 16),
        gemm_min_(c.gemm_min_tokens > 0 ? c.gemm_min_tokens : 32) {
    const std::string why = cuda_unavailable_reason();
    TERN_CHECK(why.empty(), "cuda backend: {}", why);
    int n = 0;
    check(cudaGetDeviceCount(&n), "counting devices");
    TERN_CHECK(c.device >= 0 && c.device < n, "cuda backend: device {} does not exist ({} found)", c.device, n);
    check(cudaSetDevice(c.device), "selecting the device");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a stream");
    check_blas(cublasCreate(&blas_), "creating the cuBLAS handle");
    check_blas(cublasSetStream(blas_, stream_), "cublasSetStream");
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

  std::unique_ptr<Buffer> alloc(size_t bytes) override { return std::make_unique<DeviceBuffer>(bytes); }

  size_t available_memory() const override {
    size_t free = 0, total = 0;
    check(cudaMemGetInfo(&free, &total), "querying free memory");
    return free;
  }

  void to_backend(void* dst, const void* src, size_t bytes) override {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "copy to the device");
    check(cudaStreamSynchronize(stream_), "copy to the device");
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    flush();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "copy to the host");
    check(cudaStreamSynchronize(stream_), "copy to the host");
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "device copy");
  }

  void begin_pass(size_t bytes) override {
    check(cudaStreamSynchronize(stream_), "previous pass");  // its staged inputs may still be in flight
    stage_.reserve(bytes);
    staged_ = flushed_ = 0;
    plan_key_ = {};
  }

  const void* stage(const void* host, size_t bytes) override {
    const size_t off = align_up(staged_, 256);
    TERN_CHECK(off + bytes <= stage_.capacity, "cuda backend: {} bytes staged beyond the {} announced by begin_pass",
               off + bytes, stage_.capacity);
    if (bytes) std::memcpy(stage_.host + off, host, bytes);
    staged_ = off + bytes;
    return stage_.dev + off;
  }

  TensorView place_weight(const TensorView& w) override { return upload(w, w.data, w.row_size() * w.nrows(), 0); }

  TensorView prepare_weight(const TensorView& w) override {
    const size_t bytes = w.row_size() * static_cast<size_t>(w.nrows());
    max_weight_elems_ = std::max<size_t>(max_weight_elems_, static_cast<size_t>(w.ne[0] * w.nrows()));
    if (w.layout != 0 || !cuda::has_split_layout(w.dtype) || w.ne[0] % 32 != 0) return upload(w, w.data, bytes, 0);
    std::vector<uint8_t> split(bytes);
    cuda::split_layout(w.dtype, static_cast<const uint8_t*>(w.data), w.ne[0], w.nrows(), split.data());
    return upload(w, split.data(), bytes, cuda::kSplitLayout);
  }

  void get_rows(const TensorView& table, const int32_t* ids, int64_t n, const TensorView& out) override {
    check_get_rows(table, n, out);
    on_device("get_rows", {&table, &out});
    TERN_CHECK(table.layout == 0 && table.is_contiguous(), "get_rows: the table must be in the file's row layout");
    const int32_t* host_ids = mirror(ids, n);
    for (int64_t i = 0; i < n; ++i)
      TERN_CHECK(host_ids[i] >= 0 && host_ids[i] < table.ne[1], "get_rows: id {} outside [0, {})", host_ids[i],
                 table.ne[1]);
    flush();
    cuda::get_rows(weight_of(table), ids, n, out.ptr<float>(), stream_);
  }

  void rms_norm(const TensorView& x, const TensorView& w, float eps, const TensorView& out) override {
    check_rms_norm(x, w, out);
    on_device("rms_norm", {&x, &w, &out});
    flush();
    cuda::rms_norm(x.ptr<float>(), w.ptr<float>(), out.ptr<float>(), x.ne[0], x.nrows(), eps, stream_);
  }

  void matmul(const TensorView& w, const TensorView& x, const TensorView& y) override {
    check_matmul(w, x, y);
    on_device("matmul", {&w, &x, &y});
    flush();
    if (x.ne[1] < gemm_min_) {
      cuda::gemv(weight_of(w), x.ptr<float>(), x.ne[1], y.ptr<float>(), stream_);
      return;
    }
    gemm(w, x, y);
  }

  void rope(const TensorView& x, const int32_t* pos, const RopeParams& p) override {
    check_rope(x, p);
    on_device("rope", {&x});
    mirror(pos, x.ne[2]);
    flush();
    const float theta_scale = std::pow(p.theta_base, -2.0f / static_cast<float>(p.n_rot));
    cuda::rope(x.ptr<float>(), pos, x.ne[0], x.ne[1], x.ne[2], p.n_rot, theta_scale, p.layout == RopeLayout::NeoX,
               stream_);
  }

  void kv_store(const TensorView& src, const TensorView& cache, const int32_t* slots) override {
    check_kv_store(src, cache);
    on_device("kv_store", {&src, &cache});
    const int32_t* host_slots = mirror(slots, src.ne[2]);
    for (int64_t t = 0; t < src.ne[2]; ++t)
      TERN_CHECK(host_slots[t] >= 0 && host_slots[t] < cache.ne[2], "kv_store: slot {} outside the cache", host_slots[t]);
    flush();
    cuda::kv_store(src.ptr<float>(), cache.data, cache.dtype, slots, src.ne[0], src.ne[1], src.ne[2], stream_);
  }

  void attention(const AttentionArgs& a) override;

  void swiglu(const TensorView& gate, const TensorView& up, const TensorView& out) override {
    check_same_shape("swiglu", gate, up);
    check_same_shape("swiglu", gate, out);
    on_device("swiglu", {&gate, &up, &out});
    flush();
    cuda::swiglu(gate.ptr<float>(), up.ptr<float>(), out.ptr<float>(), gate.nelements(), stream_);
  }

  void add(const TensorView& a, const TensorView& b, const TensorView& out) override {
    check_same_shape("add", a, b);
    check_same_shape("add", a, out);
    on_device("add", {&a, &b, &out});
    flush();
    cuda::add(a.ptr<float>(), b.ptr<float>(), out.ptr<float>(), a.nelements(), stream_);
  }

 private:
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

  void flush() {
    if (staged_ > flushed_) {
      check(cudaMemcpyAsync(stage_.dev + flushed_, stage_.host + flushed_, staged_ - flushed_, cudaMemcpyHostToDevice,
                            stream_),
            "staging the pass's inputs");
      flushed_ = staged_;
    }
  }

  // Prefill-sized batches: cuBLAS on f16 (bf16 for bf16 weights, f32 for f32 weights) with f32
  // accumulation, quantised weights dequantised into a scratch matrix first.
  void gemm(const TensorView& w, const TensorView& x, const TensorView& y) {
    const int n_in = static_cast<int>(w.ne[0]), n_out = static_cast<int>(w.ne[1]), T = static_cast<int>(x.ne[1]);
    const float one = 1.0f, zero = 0.0f;
    if (w.dtype == DType::F32) {
      check_blas(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, n_out, T, n_in, &one, w.data, CUDA_R_32F, n_in, x.data,
                              CUDA_R_32F, n_in, &zero, y.data, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "f32 GEMM");
      return;
    }
    const bool bf16 = w.dtype == DType::BF16;
    void* xh = x_half_.get(static_cast<size_t>(n_in) * T * 2, stream_);
    if (bf16) cuda::f32_to_bf16(x.ptr<float>(), xh, static_cast<int64_t>(n_in) * T, stream_);
    else cuda::f32_to_f16(x.ptr<float>(), xh, static_cast<int64_t>(n_in) * T, stream_);
    const void* a = w.data;
    if (w.dtype != DType::F16 && !bf16) {
      a = w_half_.get(std::max(max_weight_elems_, static_cast<size_t>(n_in) * n_out) * 2, stream_);
      cuda::dequant_f16(weight_of(w), const_cast<void*>(a), stream_);
    }
    const cudaDataType t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    check_blas(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, n_out, T, n_in, &one, a, t, n_in, xh, t, n_in, &zero,
                            y.data, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "f16 GEMM");
  }

  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  const int flash_min_, gemm_min_;
  std::vector<void*> owned_;  // weight copies
  size_t max_weight_elems_ = 0;
  MirroredArena stage_;
  size_t staged_ = 0, flushed_ = 0;
  Scratch x_half_, w_half_, partial_;

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
  const int d = static_cast<int>(a.q.ne[0]);
  TERN_CHECK(cuda::decode_supports(d), "cuda attention: head size {} unsupported (64, 128, 256)", d);
  const int64_t T = a.q.ne[2];
  const cuda::AttnDims dims{.d = d,
                            .n_head = static_cast<int>(a.q.ne[1]),
                            .n_kv_head = static_cast<int>(a.k.ne[1]),
                            .block_size = a.block_size,
                            .scale = a.scale,
                            .cache_type = a.k.dtype};
  TERN_CHECK(a.v.dtype == a.k.dtype, "cuda attention: K and V caches of different types");
  const PlanKey key{a.token_seq, a.token_pos, a.seqs, T};
  if (!(key == plan_key_)) {
    // A second plan in one pass: the first one's copy may not have left the pinned buffer yet.
    if (plan_key_.n_tokens != 0) check(cudaStreamSynchronize(stream_), "attention plan");
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
      } else {
        for (int64_t s = t; s < e; ++s) {
          items_.push_back({static_cast<int32_t>(s), seq_of[s], pos_of[s] + 1, 0});
          max_splits_ = std::max(max_splits_, (pos_of[s] + cuda::kSplitPositions) / cuda::kSplitPositions);
        }
      }
      t = e;
    }
    const size_t tile_bytes = tiles_.size() * sizeof(cuda::FlashTile), item_bytes = items_.size() * sizeof(cuda::DecodeItem);
    plan_.reserve(align_up(tile_bytes, 256) + item_bytes);
    std::memcpy(plan_.host, tiles_.data(), tile_bytes);
    std::memcpy(plan_.host + align_up(tile_bytes, 256), items_.data(), item_bytes);
    check(cudaMemcpyAsync(plan_.dev, plan_.host, align_up(tile_bytes, 256) + item_bytes, cudaMemcpyHostToDevice, stream_),
          "attention plan");
    dev_tiles_ = reinterpret_cast<const cuda::FlashTile*>(plan_.dev);
    dev_items_ = reinterpret_cast<const cuda::DecodeItem*>(plan_.dev + align_up(tile_bytes, 256));
    plan_key_ = key;
  }
  flush();
  cuda::flash_attention(a.q.ptr<float>(), a.k.data, a.v.data, a.out.ptr<float>(), a.seqs, dev_tiles_,
                        static_cast<int>(tiles_.size()), dims, stream_);
  if (!items_.empty()) {
    auto* partial = static_cast<float*>(partial_.get(
        cuda::decode_partial_floats(static_cast<int>(items_.size()), max_splits_, dims) * sizeof(float), stream_));
    cuda::decode_attention(a.q.ptr<float>(), a.k.data, a.v.data, a.out.ptr<float>(), a.seqs, dev_items_,
                           static_cast<int>(items_.size()), max_splits_, partial, dims, stream_);
  }
}

}  // namespace

std::string cuda_unavailable_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("no usable CUDA device (") + cudaGetErrorString(e) + ")";
  if (n == 0) return "no CUDA device found";
  return "";
}

std::unique_ptr<Backend> make_cuda_backend(const CudaBackendConfig& config) {
  return std::make_unique<CudaBackend>(config);
}

}  // namespace tern
