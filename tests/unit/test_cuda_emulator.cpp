// The CUDA emulator's own semantics (src/backends/cuda/emulator), with kernels written here in CUDA
// style and compiled as the backend's are (-include cuda_emu.h): warp shuffles and votes, block
// barriers with static shared memory, cp.async landing at the wait, the warp-wide ldmatrix and
// mma.m16n8k16 against a scalar matrix product, a barrier some threads never reach reported as a
// deadlock, and (ThreadSanitizer build) a race between a block's threads reported. Built only where
// the emulator is (tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "backends/cuda/emulator/launch.h"
#include "backends/cuda/kernels/dependent_launch.cuh"
#include "backends/cuda/kernels/tensor_core.cuh"
#include "backends/cuda/kernels/wgmma.cuh"
#include "core/error.h"

namespace tern::cuda {
namespace {

template <class... Params, class... Args>
void run(void (*kernel)(Params...), unsigned blocks, unsigned threads, size_t smem, Args&&... args) {
  emu::launch("test", false, kernel, dim3(blocks), dim3(threads), smem, nullptr, std::forward<Args>(args)...);
}

// Per warp: the butterfly sum of the lane ids, an inclusive scan, the ballot of odd lanes and the
// lanes holding the same value as this one (lane / 4).
__global__ void warp_ops_kernel(int* sum, int* scan, unsigned* ballot, unsigned* match) {
  const int lane = threadIdx.x % 32, t = threadIdx.x;
  int s = lane;
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  sum[t] = s;
  int v = lane + 1;
  for (int o = 1; o < 32; o <<= 1) {
    const int up = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += up;
  }
  scan[t] = v;
  ballot[t] = __ballot_sync(0xffffffffu, lane % 2);
  match[t] = __match_any_sync(0xffffffffu, lane / 4);
}

TEST(CudaEmulator, WarpShufflesAndVotes) {
  const unsigned n = 64;
  std::vector<int> sum(n), scan(n);
  std::vector<unsigned> ballot(n), match(n);
  run(warp_ops_kernel, 1, n, 0, sum.data(), scan.data(), ballot.data(), match.data());
  for (unsigned t = 0; t < n; ++t) {
    const unsigned lane = t % 32;
    EXPECT_EQ(sum[t], 496) << t;
    EXPECT_EQ(scan[t], static_cast<int>((lane + 1) * (lane + 2) / 2)) << t;
    EXPECT_EQ(ballot[t], 0xAAAAAAAAu) << t;
    EXPECT_EQ(match[t], 0xFu << (4 * (lane / 4))) << t;
  }
}

// A block sum through static shared memory, one block after the other reusing it.
__global__ void block_sum_kernel(const float* x, float* out) {
  __shared__ float partial[32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float v = x[blockIdx.x * blockDim.x + threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0;
    for (unsigned w = 0; w < blockDim.x / 32; ++w) s += partial[w];
    out[blockIdx.x] = s;
  }
}

TEST(CudaEmulator, BlockBarrierAndStaticSharedMemory) {
  const unsigned blocks = 3, threads = 256;
  std::vector<float> x(blocks * threads), out(blocks);
  std::iota(x.begin(), x.end(), 0.0f);
  run(block_sum_kernel, blocks, threads, 0, x.data(), out.data());
  for (unsigned b = 0; b < blocks; ++b) {
    const double first = b * threads, last = first + threads - 1;
    EXPECT_EQ(out[b], static_cast<float>((first + last) * threads / 2)) << b;
  }
}

// What a thread reads of its stage before and after waiting for its cp.async group.
__global__ void async_copy_kernel(const uint32_t* src, uint32_t* before, uint32_t* after) {
  TERN_DYNAMIC_SHARED(uint32_t, stage);
  const int t = threadIdx.x;
  cp_async16(stage + 4 * t, src + 4 * t, true);
  cp_async_commit();
  before[t] = stage[4 * t];
  cp_async_wait<0>();
  after[t] = stage[4 * t];
}

TEST(CudaEmulator, AsyncCopiesLandAtTheWait) {
  const unsigned threads = 32;
  std::vector<uint32_t> src(4 * threads), before(threads), after(threads);
  std::iota(src.begin(), src.end(), 1u);
  run(async_copy_kernel, 1, threads, 16 * threads, src.data(), before.data(), after.data());
  for (unsigned t = 0; t < threads; ++t) {
    EXPECT_EQ(before[t], 0xA5A5A5A5u) << t;  // the poisoned stage
    EXPECT_EQ(after[t], src[4 * t]) << t;
  }
}

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x != 5) __syncthreads();
  out[threadIdx.x] = 1;
}

TEST(CudaEmulator, ThreadsThatExitNoLongerCountAtABarrier) {
  std::vector<int> out(64);
  try {
    run(divergent_barrier_kernel, 1, 64, 0, out.data());
    // Thread 5 exits without the barrier: the others are released when it leaves (as on Volta and
    // later, where exited threads no longer count), so this one completes.
    SUCCEED();
  } catch (const Error& e) {
    FAIL() << e.what();
  }
}

__global__ void warp_deadlock_kernel(int* out) {
  int v = threadIdx.x;
  // Lane 0 waits at a warp barrier that lanes 1..31 (still running, at the block barrier) never reach.
  if (threadIdx.x % 32 == 0) __syncwarp();
  __syncthreads();
  out[threadIdx.x] = v;
}

TEST(CudaEmulator, ABarrierNotAllOfAGroupReachIsReported) {
  std::vector<int> out(64);
  try {
    run(warp_deadlock_kernel, 1, 64, 0, out.data());
    FAIL() << "no deadlock reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deadlocked"), std::string::npos) << e.what();
  }
}

// One warp: A (16 x 16) and B^T (8 x 16, i.e. B 16 x 8 column-major) as rows in shared memory,
// loaded with ldmatrix (B's two 8 x 8 halves by the x4 form, twice over), multiplied by mma.
__global__ void mma_kernel(const __half* a, const __half* bt, float* c) {
  TERN_DYNAMIC_SHARED(__half, smem);
  constexpr int SR = smem_row<16>();
  __half* as = smem;
  __half* bs = smem + 16 * SR;
  const int lane = threadIdx.x;
  for (int i = lane; i < 16 * 16; i += 32) as[(i / 16) * SR + i % 16] = a[i];
  for (int i = lane; i < 16 * 16; i += 32) bs[(i / 16) * SR + i % 16] = bt[i % (8 * 16)];
  __syncwarp();
  uint32_t af[4], bf[4];
  load_a<SR>(af, as, 0, lane);
  load_bt<SR>(bf, bs, 0, lane);  // rows 0-7 of bs as b[0], b[1]
  float acc[4] = {0, 0, 0, 0};
  mma_16816(acc, af, bf[0], bf[1]);
  const int g = lane / 4, t = lane % 4;
  c[g * 8 + 2 * t] = acc[0];
  c[g * 8 + 2 * t + 1] = acc[1];
  c[(g + 8) * 8 + 2 * t] = acc[2];
  c[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

TEST(CudaEmulator, LdmatrixAndMmaAgreeWithTheMatrixProduct) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> small(-4, 4);  // exact in f16 and in f32 sums
  std::vector<__half> a(16 * 16), bt(8 * 16);
  std::vector<float> af(a.size()), btf(bt.size());
  for (size_t i = 0; i < a.size(); ++i) af[i] = static_cast<float>(small(rng)), a[i] = __float2half_rn(af[i]);
  for (size_t i = 0; i < bt.size(); ++i) btf[i] = static_cast<float>(small(rng)), bt[i] = __float2half_rn(btf[i]);
  std::vector<float> c(16 * 8, -1.0f);
  run(mma_kernel, 1, 32, 2 * 16 * smem_row<16>() * sizeof(__half), a.data(), bt.data(), c.data());
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      float want = 0;
      for (int k = 0; k < 16; ++k) want += af[m * 16 + k] * btf[n * 16 + k];
      EXPECT_EQ(c[m * 8 + n], want) << m << "," << n;
    }
}

// One warpgroup: x (64 rows x 16, as A fragments from padded rows) times a 64 x 64 tile t laid out
// in core matrices (wgmma.cuh), both ways the flash kernel uses it: s = x t^T (t K-major: S = Q K^T)
// and o = x t[0:16, :] (t MN-major: O = P V).
__global__ void wgmma_kernel(const __half* x, const __half* t, float* s_out, float* o_out) {
  TERN_DYNAMIC_SHARED(__half, smem);
  constexpr int SR = smem_row<16>(), D = 64;
  __half* xs = smem;
  __half* ts = smem + 64 * SR;  // 16-byte aligned: 64 * 24 halves
  for (int i = threadIdx.x; i < 64 * 16; i += 128) xs[(i / 16) * SR + i % 16] = x[i];
  for (int i = threadIdx.x; i < 64 * D / 8; i += 128) {
    const int r = i / (D / 8), c = i % (D / 8);
    for (int e = 0; e < 8; ++e) ts[core_tile_offset<D>(r, c) + e] = t[r * D + 8 * c + e];
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
  uint32_t a[4];
  load_a<SR>(a, xs + warp * 16 * SR, 0, lane);
  float s[8][4], o[8][4];
  wgmma_m64k16<0>(s, a, desc_rows_t<D>(ts, 0), false);
  wgmma_m64k16<1>(o, a, desc_rows<D>(ts, 0), false);
  for (int n = 0; n < 8; ++n)
    for (int e = 0; e < 4; ++e) {
      const int row = warp * 16 + g + 8 * (e / 2), col = 8 * n + 2 * tig + e % 2;
      s_out[row * 64 + col] = s[n][e];
      o_out[row * 64 + col] = o[n][e];
    }
}

TEST(CudaEmulator, WgmmaReadsTheCoreMatrixLayoutOfWgmmaCuh) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(-4, 4);
  std::vector<__half> x(64 * 16), t(64 * 64);
  std::vector<float> xf(x.size()), tf(t.size());
  for (size_t i = 0; i < x.size(); ++i) xf[i] = static_cast<float>(small(rng)), x[i] = __float2half_rn(xf[i]);
  for (size_t i = 0; i < t.size(); ++i) tf[i] = static_cast<float>(small(rng)), t[i] = __float2half_rn(tf[i]);
  std::vector<float> s(64 * 64), o(64 * 64);
  run(wgmma_kernel, 1, 128, (64 * smem_row<16>() + 64 * 64) * sizeof(__half), x.data(), t.data(), s.data(),
      o.data());
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < 64; ++n) {
      float want_s = 0, want_o = 0;
      for (int k = 0; k < 16; ++k) {
        want_s += xf[m * 16 + k] * tf[n * 64 + k];  // x t^T: t's row n, dim k
        want_o += xf[m * 16 + k] * tf[k * 64 + n];  // x t[0:16]: t's row k, dim n
      }
      EXPECT_EQ(s[m * 64 + n], want_s) << m << "," << n;
      EXPECT_EQ(o[m * 64 + n], want_o) << m << "," << n;
    }
}

// Programmatic dependent launch: before wait_for_inputs() a kernel may touch only memory no kernel
// writes. The emulator hides kernel-written memory from a dependent launch's checked blocks until
// they wait (emulator/memory.h).
__global__ void write_kernel(float* y) { y[threadIdx.x] = 1.0f + threadIdx.x; }

template <bool kEarly>
__global__ void dependent_read_kernel(const float* y, const float* w, float* out) {
  const float weight = w[threadIdx.x];  // memory no kernel writes: allowed before the wait
  float early = 0.0f;
  if constexpr (kEarly) early = y[threadIdx.x];  // the previous kernel's output, too soon
  wait_for_inputs();
  out[threadIdx.x] = y[threadIdx.x] * weight + early;
}

TEST(CudaEmulator, ProgrammaticDependentLaunchHidesKernelOutputsUntilTheWait) {
  float *y = nullptr, *w = nullptr, *out = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&y), 32 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&w), 32 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&out), 32 * sizeof(float)), cudaSuccess);
  const std::vector<float> ones(32, 2.0f);
  ASSERT_EQ(cudaMemcpy(w, ones.data(), 32 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  run(write_kernel, 1, 32, 0, y);
  emu::launch("after the wait", true, dependent_read_kernel<false>, dim3(1), dim3(32), 0, nullptr, y, w, out);
  std::vector<float> got(32);
  ASSERT_EQ(cudaMemcpy(got.data(), out, 32 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(got[i], 2.0f * (1.0f + i)) << i;
  EXPECT_DEATH(emu::launch("too soon", true, dependent_read_kernel<true>, dim3(1), dim3(32), 0, nullptr, y, w, out),
               "touched memory that kernels write, before its wait_for_inputs");
  cudaFree(y), cudaFree(w), cudaFree(out);
}

// Under ThreadSanitizer (the -DTERN_TSAN=ON build) a block's threads are checked against each
// other: shared memory one thread writes and another reads is clean with a barrier between, and a
// reported race without one (TSan then halts the process: a death test). Skipped elsewhere.
template <bool kBarrier>
__global__ void neighbour_kernel(int* out) {
  __shared__ int v[64];
  v[threadIdx.x] = static_cast<int>(threadIdx.x);
  if constexpr (kBarrier) __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = v[(threadIdx.x + 1) % 64];
}

TEST(CudaEmulator, ARaceBetweenABlocksThreadsIsReportedUnderThreadSanitizer) {
#if !defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "needs the ThreadSanitizer build (-DTERN_TSAN=ON)";
#else
  std::vector<int> out(128);
  run(neighbour_kernel<true>, 2, 64, 0, out.data());  // a report here would fail the run at its exit
  for (int i = 0; i < 128; ++i) EXPECT_EQ(out[i], (i % 64 + 1) % 64) << i;
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the child starts afresh and reads TSAN_OPTIONS
  setenv("TSAN_OPTIONS", "halt_on_error=1", 1);
  EXPECT_DEATH(run(neighbour_kernel<false>, 1, 64, 0, out.data()), "ThreadSanitizer: data race");
  unsetenv("TSAN_OPTIONS");
#endif
}

}  // namespace
}  // namespace tern::cuda
