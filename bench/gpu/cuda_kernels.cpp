// Times the CUDA backend's kernels on their own, with CUDA events around CUDA-graph replays (so
// launch gaps do not count), against the device's measured ceilings:
//   copy      device-to-device cudaMemcpy of 2 GiB: (bytes read + written) / time
//   gemv      every matmul of one decode step of the TinyLlama-1.1B shape (22 layers, then the
//             output head), each layer's weights at their own addresses so nothing stays in L2:
//             weight bytes / time, per weight type, at 1 and 8 tokens
//   flash     causal prefill attention, one sequence, 16 heads, S keys: 4 * S^2/2 * D * heads flops
//   decode    split-KV decode attention, 16 sequences at 8192 positions, 32 heads / 8 KV heads,
//             head size 128: K and V bytes read / time (and latency cases at batch 1)
//   top_k     the best k logits of 1 or 64 rows (greedy and top-k sampling)
// Prints a table and writes one JSON object to --json FILE (--gemv-only: the GEMVs alone;
// --attention-only: the other kernels alone; --flash-only: the prefill attention alone, and
// --flash S D one shape of it; --types q4_0,bf16: the GEMVs of those weight types;
// --shapes-only: the GEMV shapes without the sweeps). A benchmark, not a test.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/cuda/kernels/launch.h"
#include "wgmma_probe.h"
#include "core/error.h"
#include "core/fp16.h"
#include "quant/quant.h"

using namespace tern;

namespace {

void ok(cudaError_t e, const char* what) { cuda::check(e, what); }

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    ok(cudaEventCreate(&a), "event");
    ok(cudaEventCreate(&b), "event");
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
};

// Median milliseconds of `reps` replays of what `enqueue` launches, captured once as a graph.
double time_graph(cudaStream_t s, const std::function<void()>& enqueue, int reps = 20) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  ok(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "capture");
  enqueue();
  ok(cudaStreamEndCapture(s, &g), "capture end");
  ok(cudaGraphInstantiate(&ge, g, 0), "instantiate");
  for (int i = 0; i < 3; ++i) ok(cudaGraphLaunch(ge, s), "warm-up");
  Timer t;
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    ok(cudaEventRecord(t.a, s), "event");
    ok(cudaGraphLaunch(ge, s), "replay");
    ok(cudaEventRecord(t.b, s), "event");
    ok(cudaEventSynchronize(t.b), "sync");
    float m = 0;
    ok(cudaEventElapsedTime(&m, t.a, t.b), "elapsed");
    ms.push_back(m);
  }
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void* dev_alloc(size_t bytes) {
  void* p = nullptr;
  ok(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}

void* dev_random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::vector<float> h(n);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  for (auto& x : h) x = d(rng);
  void* p = dev_alloc(n * 4);
  ok(cudaMemcpy(p, h.data(), n * 4, cudaMemcpyHostToDevice), "upload");
  return p;
}

void* dev_random_halves(size_t n, uint32_t seed) {
  std::vector<uint16_t> h(n);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (auto& x : h) x = f32_to_fp16(d(rng));
  void* p = dev_alloc(n * 2);
  ok(cudaMemcpy(p, h.data(), n * 2, cudaMemcpyHostToDevice), "upload");
  return p;
}

double copy_gbs(cudaStream_t s) {
  const size_t bytes = size_t{2} << 30;
  void* a = dev_alloc(bytes);
  void* b = dev_alloc(bytes);
  ok(cudaMemset(a, 1, bytes), "memset");
  ok(cudaDeviceSynchronize(), "memset");  // the legacy stream's memset, before the timed stream starts
  const double ms = time_graph(s, [&] { ok(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s), "copy"); }, 10);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

struct Shape {
  int64_t n_in, n_out;
};

// A weight of `sh` in `type` at its own device address, random and quantised (rows repeat with
// period 64: quantising 1.1B weights on the host would take minutes).
cuda::Weight random_weight(DType type, Shape sh, std::vector<void*>& owned, size_t& total) {
  const size_t rb = row_bytes(type, sh.n_in), bytes = rb * sh.n_out;
  std::vector<float> f(static_cast<size_t>(sh.n_in));
  std::vector<uint8_t> q(bytes);
  std::mt19937 rng(static_cast<uint32_t>(sh.n_in * 7 + sh.n_out));
  std::normal_distribution<float> d(0.0f, 0.02f);
  for (int64_t r = 0; r < sh.n_out; ++r) {
    if (r < 64) {
      for (auto& x : f) x = d(rng);
      quant::quantize_row(type, f.data(), q.data() + r * rb, sh.n_in);
    } else {
      std::memcpy(q.data() + r * rb, q.data() + (r % 64) * rb, rb);
    }
  }
  uint8_t layout = cuda::kFileLayout;
  if (cuda::has_split_layout(type)) {
    std::vector<uint8_t> split(bytes);
    cuda::split_layout(type, q.data(), sh.n_in, sh.n_out, split.data());
    q.swap(split);
    layout = cuda::kSplitLayout;
  }
  void* p = dev_alloc(bytes);
  ok(cudaMemcpy(p, q.data(), bytes, cudaMemcpyHostToDevice), "upload");
  owned.push_back(p);
  total += bytes;
  return {.data = p, .type = type, .layout = layout, .n_in = sh.n_in, .n_out = sh.n_out};
}

// The matmuls of one decode step of the TinyLlama-1.1B shape as the model issues them: per layer
// QKV in one launch, the output projection, gate and up in one launch, down; then the output head.
// Each launch after its input's rounding into the weight type's activation form.
nlohmann::json gemv_sweep(cudaStream_t s, DType type, double copy) {
  std::vector<void*> owned;
  size_t total = 0;
  std::vector<std::vector<cuda::Weight>> groups;
  for (int l = 0; l < 22; ++l) {
    groups.push_back({random_weight(type, {2048, 2048}, owned, total), random_weight(type, {2048, 256}, owned, total),
                      random_weight(type, {2048, 256}, owned, total)});
    groups.push_back({random_weight(type, {2048, 2048}, owned, total)});
    groups.push_back({random_weight(type, {2048, 5632}, owned, total), random_weight(type, {2048, 5632}, owned, total)});
    groups.push_back({random_weight(type, {5632, 2048}, owned, total)});
  }
  groups.push_back({random_weight(type, {2048, 32000}, owned, total)});
  const int max_tok = 8;
  auto* x = static_cast<float*>(dev_random_floats(5632 * max_tok, 3));
  std::vector<float*> ys;
  for (int i = 0; i < 3; ++i) ys.push_back(static_cast<float*>(dev_alloc(32000 * max_tok * 4)));
  const DType at = quant::vec_dot_type(type);
  void* act = dev_alloc(cuda::activation_bytes(at, 5632, max_tok) + 256);
  nlohmann::json j = {{"type", std::string(dtype_name(type))}, {"weight_bytes", total}};
  for (int nt : {1, 8}) {
    const double ms = time_graph(s, [&] {
      for (const auto& g : groups) {
        const cuda::Activation a = cuda::activation_view(at, x, g[0].n_in, nt, act);
        cuda::quantize_activation(a, x, nt, s);
        cuda::gemv(g.data(), ys.data(), static_cast<int>(g.size()), a, nt, s);
      }
    });
    const double gbs = total / (ms * 1e-3) / 1e9;
    j["tokens_" + std::to_string(nt)] = {{"ms", ms}, {"gbs", gbs}, {"percent_of_copy", 100 * gbs / copy}};
    std::printf("gemv     %-5s %d token%s  %7.3f ms per decode step  %7.1f GB/s  %5.1f%% of copy\n",
                std::string(dtype_name(type)).c_str(), nt, nt > 1 ? "s" : " ", ms, gbs, 100 * gbs / copy);
  }
  for (void* p : owned) cudaFree(p);
  for (float* y : ys) cudaFree(y);
  cudaFree(x);
  cudaFree(act);
  return j;
}

// One matmul shape of the 1.1B model on its own: 22 copies (one per layer, so L2 holds none of
// them) launched back to back, one token: the kernel's streaming rate without the other kernels of
// a decode step in between.
nlohmann::json gemv_shape(cudaStream_t s, DType type, const char* name, std::vector<Shape> fused, double copy) {
  std::vector<void*> owned;
  size_t total = 0;
  std::vector<std::vector<cuda::Weight>> layers;
  for (int l = 0; l < 22; ++l) {
    std::vector<cuda::Weight> g;
    for (const Shape& sh : fused) g.push_back(random_weight(type, sh, owned, total));
    layers.push_back(g);
  }
  auto* x = static_cast<float*>(dev_random_floats(5632, 4));
  std::vector<float*> ys;
  for (int i = 0; i < 3; ++i) ys.push_back(static_cast<float*>(dev_alloc(32000 * 4)));
  const DType at = quant::vec_dot_type(type);
  void* act = dev_alloc(cuda::activation_bytes(at, 5632, 1) + 256);
  const cuda::Activation a = cuda::activation_view(at, x, fused[0].n_in, 1, act);
  cuda::quantize_activation(a, x, 1, s);  // once: the launches timed are the GEMVs alone
  const double ms = time_graph(s, [&] {
    for (const auto& g : layers) cuda::gemv(g.data(), ys.data(), static_cast<int>(g.size()), a, 1, s);
  });
  cudaFree(act);
  const double gbs = total / (ms * 1e-3) / 1e9;
  std::printf("gemv     %-5s %-22s %7.1f us each  %7.1f GB/s\n", std::string(dtype_name(type)).c_str(), name,
              1000 * ms / 22, gbs);
  for (void* p : owned) cudaFree(p);
  for (float* y : ys) cudaFree(y);
  cudaFree(x);
  return {{"type", std::string(dtype_name(type))}, {"shape", name}, {"us", 1000 * ms / 22}, {"gbs", gbs}};
}

// One sequence of S tokens at positions 0..S-1, blocks of 16 in order.
nlohmann::json flash_bench(cudaStream_t s, int S, int D) {
  const int H = 16, bs = 16;
  const cuda::AttnDims dims{.d = D, .n_head = H, .n_kv_head = H, .block_size = bs, .scale = 1.0f / std::sqrt(float(D)),
                            .cache_type = DType::F16};
  auto* q = static_cast<float*>(dev_random_floats(static_cast<size_t>(S) * H * D, 5));
  void* k = dev_random_halves(static_cast<size_t>(S) * H * D, 6);
  void* v = dev_random_halves(static_cast<size_t>(S) * H * D, 7);
  auto* out = static_cast<float*>(dev_alloc(static_cast<size_t>(S) * H * D * 4));
  std::vector<int32_t> table(S / bs);
  for (int i = 0; i < S / bs; ++i) table[i] = i;
  auto* dtable = static_cast<int32_t*>(dev_alloc(table.size() * 4));
  ok(cudaMemcpy(dtable, table.data(), table.size() * 4, cudaMemcpyHostToDevice), "upload");
  const KvSeq seq{dtable, S / bs};
  auto* dseq = static_cast<KvSeq*>(dev_alloc(sizeof(KvSeq)));
  ok(cudaMemcpy(dseq, &seq, sizeof seq, cudaMemcpyHostToDevice), "upload");
  std::vector<cuda::FlashTile> tiles;
  for (int t = 0; t < S; t += cuda::kFlashTileTokens) tiles.push_back({t, std::min(cuda::kFlashTileTokens, S - t), 0, t});
  while (tiles.size() % static_cast<size_t>(cuda::flash_tiles_per_block()) != 0) tiles.push_back({0, 0, 0, 0});
  auto* dtiles = static_cast<cuda::FlashTile*>(dev_alloc(tiles.size() * sizeof(cuda::FlashTile)));
  ok(cudaMemcpy(dtiles, tiles.data(), tiles.size() * sizeof(cuda::FlashTile), cudaMemcpyHostToDevice), "upload");
  const double ms = time_graph(s, [&] {
    cuda::flash_attention(q, k, v, out, dseq, dtiles, static_cast<int>(tiles.size()), dims, s);
  });
  const double flops = 4.0 * H * D * (static_cast<double>(S) * (S + 1) / 2);
  const double tflops = flops / (ms * 1e-3) / 1e12;
  std::printf("flash    S %5d D %3d  %8.3f ms  %6.1f TFLOP/s\n", S, D, ms, tflops);
  for (void* p : {static_cast<void*>(q), k, v, static_cast<void*>(out), static_cast<void*>(dtable),
                  static_cast<void*>(dseq), static_cast<void*>(dtiles)})
    cudaFree(p);
  return {{"S", S}, {"D", D}, {"heads", H}, {"ms", ms}, {"tflops", tflops}};
}

// Split-KV decode attention: B sequences of ctx positions (blocks of 16 in order), `copies` launches
// back to back over the same cache (1 for the bandwidth case; 22, a decode step's layers, for the
// latency of a short context, whose cache then sits in L2).
nlohmann::json decode_bench(cudaStream_t s, double copy, int B, int ctx, int H, int KV, int D, int copies = 1) {
  const int bs = 16;
  const cuda::AttnDims dims{.d = D, .n_head = H, .n_kv_head = KV, .block_size = bs,
                            .scale = 1.0f / std::sqrt(float(D)), .cache_type = DType::F16};
  const size_t slots = static_cast<size_t>(B) * ctx;
  void* k = dev_random_halves(slots * KV * D, 8);
  void* v = dev_random_halves(slots * KV * D, 9);
  auto* q = static_cast<float*>(dev_random_floats(static_cast<size_t>(B) * H * D, 10));
  auto* out = static_cast<float*>(dev_alloc(static_cast<size_t>(B) * H * D * 4));
  std::vector<int32_t> table(slots / bs);
  for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<int32_t>(i);
  auto* dtable = static_cast<int32_t*>(dev_alloc(table.size() * 4));
  ok(cudaMemcpy(dtable, table.data(), table.size() * 4, cudaMemcpyHostToDevice), "upload");
  std::vector<KvSeq> seqs;
  std::vector<cuda::DecodeItem> items;
  for (int b = 0; b < B; ++b) {
    seqs.push_back({dtable + b * (ctx / bs), ctx / bs});
    items.push_back({b, b, ctx, 0});
  }
  auto* dseqs = static_cast<KvSeq*>(dev_alloc(seqs.size() * sizeof(KvSeq)));
  ok(cudaMemcpy(dseqs, seqs.data(), seqs.size() * sizeof(KvSeq), cudaMemcpyHostToDevice), "upload");
  auto* ditems = static_cast<cuda::DecodeItem*>(dev_alloc(items.size() * sizeof(cuda::DecodeItem)));
  ok(cudaMemcpy(ditems, items.data(), items.size() * sizeof(cuda::DecodeItem), cudaMemcpyHostToDevice), "upload");
  const int splits = (ctx + cuda::kSplitPositions - 1) / cuda::kSplitPositions;
  auto* partial = static_cast<float*>(dev_alloc(cuda::decode_partial_floats(B, splits, dims) * 4));
  const double ms = time_graph(s, [&] {
    for (int c = 0; c < copies; ++c)
      cuda::decode_attention(q, k, v, out, dseqs, ditems, B, splits, partial, dims, cuda::Activation{}, s);
  }) / copies;
  const double bytes = 2.0 * slots * KV * D * 2;
  const double gbs = bytes / (ms * 1e-3) / 1e9;
  if (copies == 1)
    std::printf("decode   %d seq%s x %d positions, %d/%d heads, D %d  %7.3f ms  %7.1f GB/s  %5.1f%% of copy\n", B,
                B > 1 ? "s" : " ", ctx, H, KV, D, ms, gbs, 100 * gbs / copy);
  else
    std::printf("decode   %d seq%s x %d positions, %d/%d heads, D %d  %7.2f us each (%d back to back)\n", B,
                B > 1 ? "s" : " ", ctx, H, KV, D, 1000 * ms, copies);
  for (void* p : {k, v, static_cast<void*>(q), static_cast<void*>(out), static_cast<void*>(dtable),
                  static_cast<void*>(dseqs), static_cast<void*>(ditems), static_cast<void*>(partial)})
    cudaFree(p);
  return {{"seqs", B}, {"ctx", ctx}, {"heads", H}, {"kv_heads", KV}, {"D", D}, {"ms", ms}, {"gbs", gbs},
          {"percent_of_copy", 100 * gbs / copy}, {"copies", copies}};
}

// The best k of `rows` rows of logits over a 32000-token vocabulary (what a pass of greedy or top-k
// sampling sends back instead of whole rows): microseconds per launch.
nlohmann::json top_k_bench(cudaStream_t s, int rows, int k) {
  const int64_t n = 32000;
  auto* x = static_cast<float*>(dev_random_floats(static_cast<size_t>(n * rows), 11, 4.0f));
  auto* v = static_cast<float*>(dev_alloc(static_cast<size_t>(rows * k) * 4));
  auto* ids = static_cast<int32_t*>(dev_alloc(static_cast<size_t>(rows * k) * 4));
  const double ms = time_graph(s, [&] { cuda::top_k(x, n, rows, k, v, ids, s); });
  std::printf("top_k    %2d row%s x %lld logits, k %3d  %7.2f us\n", rows, rows > 1 ? "s" : " ",
              static_cast<long long>(n), k, 1000 * ms);
  for (void* p : {static_cast<void*>(x), static_cast<void*>(v), static_cast<void*>(ids)}) cudaFree(p);
  return {{"rows", rows}, {"n", n}, {"k", k}, {"us", 1000 * ms}};
}

// The other kernels of a 1.1B decode step at batch 1, each launched `copies` times back to back
// (as often as a step launches it): microseconds per launch, the latency that the GEMVs' streaming
// does not hide.
nlohmann::json step_kernels(cudaStream_t s) {
  const int64_t n = 2048, d = 64, q_heads = 32, kv_heads = 4, slots = 256;
  auto* x = static_cast<float*>(dev_random_floats(n, 11));
  auto* dx = static_cast<float*>(dev_random_floats(n, 12));
  auto* w = static_cast<float*>(dev_random_floats(n, 13));
  auto* out = static_cast<float*>(dev_alloc(n * 4));
  void* rounded_buf = dev_alloc(cuda::activation_bytes(DType::BF16, n, 1) + 256);
  const cuda::Activation rounded = cuda::activation_view(DType::BF16, out, n, 1, rounded_buf);
  auto* q = static_cast<float*>(dev_random_floats(d * q_heads, 14));
  auto* k = static_cast<float*>(dev_random_floats(d * kv_heads, 15));
  auto* v = static_cast<float*>(dev_random_floats(d * kv_heads, 16));
  void* kc = dev_alloc(slots * kv_heads * d * 2);
  void* vc = dev_alloc(slots * kv_heads * d * 2);
  const int32_t pos = 100, slot = 100;
  auto* dpos = static_cast<int32_t*>(dev_alloc(4));
  auto* dslot = static_cast<int32_t*>(dev_alloc(4));
  ok(cudaMemcpy(dpos, &pos, 4, cudaMemcpyHostToDevice), "upload");
  ok(cudaMemcpy(dslot, &slot, 4, cudaMemcpyHostToDevice), "upload");
  nlohmann::json j;
  const auto run = [&](const char* name, int copies, const std::function<void()>& one) {
    const double us = 1000 * time_graph(s, [&] {
      for (int c = 0; c < copies; ++c) one();
    }) / copies;
    std::printf("step     %-40s %7.2f us each (%d back to back)\n", name, us, copies);
    j.push_back({{"kernel", name}, {"us", us}, {"copies", copies}});
  };
  run("add + rms_norm 2048, rounded to bf16", 44,
      [&] { cuda::add_rms_norm(x, dx, w, out, n, 1, 1e-5f, rounded, s); });
  run("rope q 32 + k 4 heads, k/v stores (d 64)", 22, [&] {
    cuda::rope_store(q, k, v, dpos, kc, vc, DType::F16, dslot, d, q_heads, kv_heads, 1, static_cast<int>(d),
                     std::pow(10000.0f, -2.0f / static_cast<float>(d)), false, s);
  });
  for (void* p : {static_cast<void*>(x), static_cast<void*>(dx), static_cast<void*>(w), static_cast<void*>(out),
                  rounded_buf, static_cast<void*>(q), static_cast<void*>(k), static_cast<void*>(v), kc, vc,
                  static_cast<void*>(dpos), static_cast<void*>(dslot)})
    cudaFree(p);
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  bool gemv_only = false;       // --gemv-only: skip the attention kernels
  bool attention_only = false;  // --attention-only: skip the GEMVs
  bool flash_only = false;      // --flash-only: the prefill attention kernel alone
  int flash_s = 0, flash_d = 0;  // --flash S D: one shape of it
  std::vector<DType> types;      // --types q4_0,bf16: the GEMVs of these weight types only
  bool shapes_only = false;      // --shapes-only: the GEMV shapes without the sweeps
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[i + 1];
    if (!std::strcmp(argv[i], "--gemv-only")) gemv_only = true;
    if (!std::strcmp(argv[i], "--attention-only")) attention_only = true;
    if (!std::strcmp(argv[i], "--flash-only")) flash_only = attention_only = true;
    if (!std::strcmp(argv[i], "--shapes-only")) shapes_only = gemv_only = true;
    if (!std::strcmp(argv[i], "--types") && i + 1 < argc) {
      std::string list = argv[i + 1];
      for (size_t at = 0; at <= list.size();) {
        const size_t end = std::min(list.find(',', at), list.size());
        const auto t = dtype_from_name(list.substr(at, end - at));
        if (!t) {
          std::fprintf(stderr, "cuda_kernels: --types: unknown type '%s'\n", list.substr(at, end - at).c_str());
          return 2;
        }
        types.push_back(*t);
        at = end + 1;
      }
    }
    if (!std::strcmp(argv[i], "--flash") && i + 2 < argc) {
      flash_only = attention_only = true;
      flash_s = std::atoi(argv[i + 1]), flash_d = std::atoi(argv[i + 2]);
    }
  }
  try {
    cudaDeviceProp prop{};
    ok(cudaGetDeviceProperties(&prop, 0), "device properties");
    cudaStream_t s;
    ok(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
    cuda::prepare_kernels();
    std::printf("device   %s, %d SMs, %.0f MiB\n", prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1048576.0);
    const double copy = copy_gbs(s);
    std::printf("copy     device-to-device %.1f GB/s (read + written)\n", copy);
    nlohmann::json j = {{"device", prop.name}, {"copy_gbs", copy}};
    const auto wanted = [&](DType t) { return types.empty() || std::find(types.begin(), types.end(), t) != types.end(); };
    for (DType t : {DType::BF16, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q6_K}) {
      if (attention_only || shapes_only) break;
      if (!wanted(t)) continue;
      j["gemv"].push_back(gemv_sweep(s, t, copy));
    }
    for (DType t : {DType::BF16, DType::Q8_0, DType::Q4_0}) {
      if (attention_only) break;
      if (!wanted(t)) continue;
      j["gemv_shapes"].push_back(gemv_shape(s, t, "qkv 2048 -> 2560", {{2048, 2048}, {2048, 256}, {2048, 256}}, copy));
      j["gemv_shapes"].push_back(gemv_shape(s, t, "gate+up 2048 -> 11264", {{2048, 5632}, {2048, 5632}}, copy));
      j["gemv_shapes"].push_back(gemv_shape(s, t, "down 5632 -> 2048", {{5632, 2048}}, copy));
      j["gemv_shapes"].push_back(gemv_shape(s, t, "output 2048 -> 32000", {{2048, 32000}}, copy));
    }
    if (!gemv_only) {
      std::printf("flash    kernels: %s, %d tile%s of 64 queries per block\n", cuda::flash_wgmma() ? "wgmma (sm_90a)" : "mma.sync",
                  cuda::flash_tiles_per_block(), cuda::flash_tiles_per_block() > 1 ? "s" : "");
      j["flash_kernels"] = cuda::flash_wgmma() ? "wgmma" : "mma.sync";
      if (flash_s == 0)
        for (int D : {64, 128}) j["wgmma_probe"].push_back(bench::wgmma_probe(D));
      for (int D : {64, 128})
        for (int S : {1024, 2048, 4096, 8192})
          if (flash_s == 0 || (S == flash_s && D == flash_d)) j["flash"].push_back(flash_bench(s, S, D));
    }
    if (!gemv_only && !flash_only) {
      j["decode_attention"] = decode_bench(s, copy, 16, 8192, 32, 8, 128);
      // Batch 1 at a context whose cache (134 MB) does not fit in L2 between replays.
      j["decode_attention_one"] = decode_bench(s, copy, 1, 32768, 32, 8, 128);
      // TinyLlama's attention at batch 1 and short contexts, as a decode step launches it.
      for (int ctx : {128, 1024}) j["decode_attention_short"].push_back(decode_bench(s, copy, 1, ctx, 32, 4, 64, 22));
      j["step_kernels"] = step_kernels(s);
      for (int rows : {1, 64})
        for (int k : {1, 40}) j["top_k"].push_back(top_k_bench(s, rows, k));
    }
    if (!json_path.empty()) {
      std::FILE* f = std::fopen(json_path.c_str(), "w");
      TERN_CHECK(f, "{}: cannot write", json_path);
      std::fprintf(f, "%s\n", j.dump(1).c_str());
      std::fclose(f);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_kernels: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
