#include "wgmma_probe.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "backends/cuda/kernels/launch.h"
#include "backends/cuda/kernels/tensor_core.cuh"
#include "backends/cuda/kernels/wgmma.cuh"

namespace tern::bench {
namespace {

constexpr int kRows = 64;  // query rows and keys, as in a FlashAttention tile

// One warpgroup: s = q k^T [64][64] and o = p v [64][D], the operands staged in shared memory as the
// prefill kernel stages them (q and p in padded rows read by ldmatrix, k and v in core matrices).
template <int D>
__global__ void __launch_bounds__(128) probe_kernel(const __half* q, const __half* k, const __half* p, const __half* v,
                                                    float* s_out, float* o_out) {
  constexpr int QR = cuda::smem_row<D>(), PR = cuda::smem_row<kRows>();
  extern __shared__ __align__(16) unsigned char probe_smem[];
  __half* qs = reinterpret_cast<__half*>(probe_smem);
  __half* ps = qs + kRows * QR;
  __half* ks = ps + kRows * PR;
  __half* vs = ks + kRows * D;
  for (int i = threadIdx.x; i < kRows * D / 8; i += 128) {
    const int r = i / (D / 8), c = i % (D / 8);
    *reinterpret_cast<uint4*>(qs + r * QR + c * 8) = *reinterpret_cast<const uint4*>(q + r * D + c * 8);
    *reinterpret_cast<uint4*>(ks + cuda::core_tile_offset<D>(r, c)) = *reinterpret_cast<const uint4*>(k + r * D + c * 8);
    *reinterpret_cast<uint4*>(vs + cuda::core_tile_offset<D>(r, c)) = *reinterpret_cast<const uint4*>(v + r * D + c * 8);
  }
  for (int i = threadIdx.x; i < kRows * kRows / 8; i += 128) {
    const int r = i / (kRows / 8), c = i % (kRows / 8);
    *reinterpret_cast<uint4*>(ps + r * PR + c * 8) = *reinterpret_cast<const uint4*>(p + r * kRows + c * 8);
  }
  cuda::fence_proxy_async();
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;

  uint32_t qa[D / 16][4];
  for (int kk = 0; kk < D / 16; ++kk) cuda::load_a<QR>(qa[kk], qs + warp * 16 * QR, kk * 16, lane);
  float s[kRows / 8][4];  // written by the first product, as in the prefill kernel
  cuda::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) cuda::wgmma_m64k16<0>(s, qa[kk], cuda::desc_rows_t<D>(ks, kk * 16), kk > 0);
  cuda::wgmma_commit();
  cuda::wgmma_wait<0>();
  cuda::wgmma_pin(s);

  uint32_t pa[kRows / 16][4];
  for (int kk = 0; kk < kRows / 16; ++kk) cuda::load_a<PR>(pa[kk], ps + warp * 16 * PR, kk * 16, lane);
  float o[D / 8][4];
  cuda::wgmma_pin(pa);
  cuda::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kRows / 16; ++kk) cuda::wgmma_m64k16<1>(o, pa[kk], cuda::desc_rows<D>(vs, kk * 16), kk > 0);
  cuda::wgmma_commit();
  cuda::wgmma_wait<0>();
  cuda::wgmma_pin(o);

  // Accumulator tile t: columns 8t + 2 tig (+1) of rows g and g + 8 of this warp's 16.
  for (int r = 0; r < 2; ++r) {
    const int row = warp * 16 + g + 8 * r;
    for (int t = 0; t < kRows / 8; ++t)
      for (int e = 0; e < 2; ++e) s_out[row * kRows + 8 * t + 2 * tig + e] = s[t][2 * r + e];
    for (int t = 0; t < D / 8; ++t)
      for (int e = 0; e < 2; ++e) o_out[row * D + 8 * t + 2 * tig + e] = o[t][2 * r + e];
  }
}

void ok(cudaError_t e, const char* what) { cuda::check(e, what); }

// The largest |got - want| and where it is (row, column), over rows x cols.
struct Worst {
  double err = 0;
  int row = 0, col = 0;
};
Worst compare(const std::vector<float>& got, const std::vector<double>& want, int cols) {
  Worst w;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(got[i] - want[i]);
    if (!(e <= w.err)) w = {std::isnan(e) ? INFINITY : e, static_cast<int>(i / cols), static_cast<int>(i % cols)};
  }
  return w;
}

template <int D>
bool probe() {
  std::mt19937 rng(90 + D);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto halves = [&](size_t n, std::vector<double>& as_double) {
    std::vector<__half> h(n);
    as_double.resize(n);
    for (size_t i = 0; i < n; ++i) h[i] = __float2half(u(rng)), as_double[i] = __half2float(h[i]);
    return h;
  };
  std::vector<double> qd, kd, pd, vd;
  const auto qh = halves(kRows * D, qd), kh = halves(kRows * D, kd), ph = halves(kRows * kRows, pd),
             vh = halves(kRows * D, vd);
  std::vector<double> s_want(kRows * kRows, 0.0), o_want(kRows * D, 0.0);
  for (int i = 0; i < kRows; ++i)
    for (int j = 0; j < kRows; ++j)
      for (int c = 0; c < D; ++c) s_want[i * kRows + j] += qd[i * D + c] * kd[j * D + c];
  for (int i = 0; i < kRows; ++i)
    for (int c = 0; c < D; ++c)
      for (int j = 0; j < kRows; ++j) o_want[i * D + c] += pd[i * kRows + j] * vd[j * D + c];

  __half *q, *k, *p, *v;
  float *s_dev, *o_dev;
  const size_t hb = sizeof(__half);
  ok(cudaMalloc(&q, qh.size() * hb), "probe alloc");
  ok(cudaMalloc(&k, kh.size() * hb), "probe alloc");
  ok(cudaMalloc(&p, ph.size() * hb), "probe alloc");
  ok(cudaMalloc(&v, vh.size() * hb), "probe alloc");
  ok(cudaMalloc(&s_dev, s_want.size() * 4), "probe alloc");
  ok(cudaMalloc(&o_dev, o_want.size() * 4), "probe alloc");
  ok(cudaMemcpy(q, qh.data(), qh.size() * hb, cudaMemcpyHostToDevice), "probe upload");
  ok(cudaMemcpy(k, kh.data(), kh.size() * hb, cudaMemcpyHostToDevice), "probe upload");
  ok(cudaMemcpy(p, ph.data(), ph.size() * hb, cudaMemcpyHostToDevice), "probe upload");
  ok(cudaMemcpy(v, vh.data(), vh.size() * hb, cudaMemcpyHostToDevice), "probe upload");
  const int smem = (kRows * cuda::smem_row<D>() + kRows * cuda::smem_row<kRows>() + 2 * kRows * D) * sizeof(__half);
  ok(cudaFuncSetAttribute(probe_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), "probe smem");
  probe_kernel<D><<<1, 128, smem>>>(q, k, p, v, s_dev, o_dev);
  ok(cudaGetLastError(), "probe launch");
  std::vector<float> s_got(s_want.size()), o_got(o_want.size());
  ok(cudaMemcpy(s_got.data(), s_dev, s_got.size() * 4, cudaMemcpyDeviceToHost), "probe download");
  ok(cudaMemcpy(o_got.data(), o_dev, o_got.size() * 4, cudaMemcpyDeviceToHost), "probe download");
  for (void* x : {static_cast<void*>(q), static_cast<void*>(k), static_cast<void*>(p), static_cast<void*>(v),
                  static_cast<void*>(s_dev), static_cast<void*>(o_dev)})
    cudaFree(x);
  // f16 products summed in f32: errors of order 1e-5 against sums of magnitude up to D.
  const Worst ws = compare(s_got, s_want, kRows), wo = compare(o_got, o_want, D);
  const bool good = ws.err < 1e-2 && wo.err < 1e-2;
  std::printf("wgmma    D %3d: S = Q K^T max |err| %.3g (row %d, key %d), O = P V max |err| %.3g (row %d, dim %d): %s\n",
              D, ws.err, ws.row, ws.col, wo.err, wo.row, wo.col, good ? "ok" : "FAILED");
  return good;
}

}  // namespace

bool wgmma_probe(int d) {
  if (!cuda::flash_wgmma()) {
    std::printf("wgmma    not used on this device (or TERN_CUDA_WGMMA=0): nothing to probe\n");
    return true;
  }
  return d == 64 ? probe<64>() : probe<128>();
}

}  // namespace tern::bench
