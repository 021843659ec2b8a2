// bench/machine.cpp: this machine's ceilings, the denominators of tern's roofline (DESIGN.md,
// "Performance method"): STREAM-like memory bandwidth (copy, triad, and a read-only sum, since LLM
// decode mostly reads weights) and peak arithmetic (fp32 FMA, int8 dot products), each at 1 thread
// and at N threads. Built and run by bench/machine, which caches the JSON for `tern bench`.
//
// One binary runs anywhere: it is compiled for the baseline ISA and each SIMD kernel carries its own
// __attribute__((target(...))), called only after a CPUID check (__builtin_cpu_supports, which also
// checks that the OS saves the wide registers).
//
// Conventions (also written into the JSON):
// - bandwidth counts bytes the STREAM way: copy c=a moves 2 x 8 bytes per element, triad a=b+s*c
//   3 x 8, read (sum of a) 1 x 8; write-allocate traffic is not counted. GB/s = 1e9 bytes/s.
// - a fused multiply-add is 2 flops; an int8 multiply-accumulate (u8 x s8 -> s32) is 2 ops.
// - every figure is the best (shortest time) of --reps repetitions after one warm-up.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#if defined(__x86_64__) || defined(__i386__)
#define TERN_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int threads = 0;          // N; 0 = the CPUs this process may run on
  size_t array_mib = 256;   // per array; 3 arrays for copy/triad
  int reps = 10;
  bool json = false;
  std::string save_path;    // also write the JSON here
};

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: machine [-t N] [--mib M] [-r REPS] [--output table|json] [--save FILE]\n"
               "  -t N          measure at 1 and N threads (default: the CPUs this process may use)\n"
               "  --mib M       size of each bandwidth array in MiB (default 256; 3 arrays)\n"
               "  -r REPS       repetitions, best is reported (default 10)\n"
               "  --output FMT  table (default) or json\n"
               "  --save FILE   also write the JSON result to FILE\n");
  std::exit(code);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (a == "-t" || a == "--threads") o.threads = std::atoi(next().c_str());
    else if (a == "--mib") o.array_mib = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "-r" || a == "--reps") o.reps = std::atoi(next().c_str());
    else if (a == "--output" || a == "-o") {
      std::string f = next();
      if (f != "json" && f != "table") usage(2);
      o.json = f == "json";
    } else if (a == "--save") o.save_path = next();
    else if (a == "-h" || a == "--help") usage(0);
    else usage(2);
  }
  if (o.threads < 0 || o.reps < 1 || o.array_mib < 1) usage(2);
  return o;
}

std::string cpu_name() {
#if TERN_X86
  unsigned r[12] = {};
  if (__get_cpuid_max(0x80000000u, nullptr) >= 0x80000004u) {
    for (unsigned i = 0; i < 3; ++i) __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
    std::string s(reinterpret_cast<const char*>(r), sizeof r);
    s = s.c_str();
    s.erase(0, s.find_first_not_of(' '));
    s.erase(s.find_last_not_of(' ') + 1);
    if (!s.empty()) return s;
  }
#endif
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f)) {
      if (std::strncmp(line, "model name", 10) == 0 || std::strncmp(line, "Model", 5) == 0) {
        std::string s = std::strchr(line, ':') ? std::strchr(line, ':') + 1 : line;
        s.erase(0, s.find_first_not_of(" \t"));
        s.erase(s.find_last_not_of(" \t\n") + 1);
        std::fclose(f);
        return s;
      }
    }
    std::fclose(f);
  }
  return "unknown";
}

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  if (cpus.empty())
    for (unsigned c = 0; c < std::max(1u, std::thread::hardware_concurrency()); ++c) cpus.push_back(int(c));
  return cpus;
}

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// Runs body(tid) on n threads (the caller is thread 0), each pinned to its own allowed CPU, reps+1
// times in lockstep; returns the shortest wall time of the last reps (the first is a warm-up).
double time_parallel(int n, int reps, const std::vector<int>& cpus, const std::function<void(int)>& body) {
  cpu_set_t saved;
  pthread_getaffinity_np(pthread_self(), sizeof saved, &saved);
  std::barrier sync(n);
  double best = 1e300;
  auto worker = [&](int tid) {
    pin_to(cpus[size_t(tid) % cpus.size()]);
    for (int r = 0; r <= reps; ++r) {
      sync.arrive_and_wait();
      auto t0 = Clock::now();
      body(tid);
      sync.arrive_and_wait();
      if (tid == 0 && r > 0) best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (auto& t : pool) t.join();
  pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
  return best;
}

// ---------------------------------------------------------------- bandwidth kernels
// Plain loops, vectorised by the compiler for each target; built with
// -fno-tree-loop-distribute-patterns so copy stays a load/store loop and is not turned into memcpy
// (whose non-temporal stores would measure something else).
#define TERN_STREAM_KERNELS(SUFFIX, TARGET)                                                      \
  TARGET void copy_##SUFFIX(const double* __restrict a, double* __restrict c, size_t n) {        \
    for (size_t i = 0; i < n; ++i) c[i] = a[i];                                                   \
  }                                                                                               \
  TARGET void triad_##SUFFIX(double* __restrict a, const double* __restrict b,                    \
                             const double* __restrict c, double s, size_t n) {                    \
    for (size_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];                                        \
  }

TERN_STREAM_KERNELS(base, )

// Sum with 8 independent accumulators: FP addition is not associative, so without -ffast-math the
// compiler would keep one serial chain and measure add latency instead of bandwidth.
double read_base(const double* a, size_t n) {
  double s[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) s[k] += a[i + k];
  for (; i < n; ++i) s[0] += a[i];
  double t = 0;
  for (double v : s) t += v;
  return t;
}

#if TERN_X86
TERN_STREAM_KERNELS(avx2, __attribute__((target("avx2,fma"))))
TERN_STREAM_KERNELS(avx512, __attribute__((target("avx512f"))))

__attribute__((target("avx2"))) double read_avx2(const double* a, size_t n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_add_pd(s0, _mm256_loadu_pd(a + i));
    s1 = _mm256_add_pd(s1, _mm256_loadu_pd(a + i + 4));
    s2 = _mm256_add_pd(s2, _mm256_loadu_pd(a + i + 8));
    s3 = _mm256_add_pd(s3, _mm256_loadu_pd(a + i + 12));
  }
  alignas(32) double r[4];
  _mm256_store_pd(r, _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
  double t = r[0] + r[1] + r[2] + r[3];
  for (; i < n; ++i) t += a[i];
  return t;
}

__attribute__((target("avx512f"))) double read_avx512(const double* a, size_t n) {
  __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_add_pd(s0, _mm512_loadu_pd(a + i));
    s1 = _mm512_add_pd(s1, _mm512_loadu_pd(a + i + 8));
    s2 = _mm512_add_pd(s2, _mm512_loadu_pd(a + i + 16));
    s3 = _mm512_add_pd(s3, _mm512_loadu_pd(a + i + 24));
  }
  alignas(64) double r[8];  // (not _mm512_reduce_add_pd: GCC 12's header warns on it)
  _mm512_store_pd(r, _mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(s2, s3)));
  double t = 0;
  for (double v : r) t += v;
  for (; i < n; ++i) t += a[i];
  return t;
}
#endif

struct StreamKernels {
  const char* isa;
  void (*copy)(const double*, double*, size_t);
  void (*triad)(double*, const double*, const double*, double, size_t);
  double (*read)(const double*, size_t);
};

StreamKernels pick_stream_kernels() {
#if TERN_X86
  if (__builtin_cpu_supports("avx512f")) return {"avx512f", copy_avx512, triad_avx512, read_avx512};
  if (__builtin_cpu_supports("avx2")) return {"avx2", copy_avx2, triad_avx2, read_avx2};
#endif
  return {"baseline", copy_base, triad_base, read_base};
}

// ---------------------------------------------------------------- compute kernels
// Each returns the number of flops (or int8 ops) it performed; the accumulators are independent
// chains, more of them than FMA latency x FMA ports, so the loop is throughput-bound.
volatile double g_sink;

#if TERN_X86
__attribute__((target("avx2,fma"))) double fma_avx2(uint64_t iters) {
  __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  __m256 a0 = _mm256_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0;
  // The empty asm makes every accumulator opaque each iteration; otherwise GCC sees ten identical
  // chains and computes one.
  for (uint64_t i = 0; i < iters; ++i) {
    a0 = _mm256_fmadd_ps(a0, x, y); a1 = _mm256_fmadd_ps(a1, x, y);
    a2 = _mm256_fmadd_ps(a2, x, y); a3 = _mm256_fmadd_ps(a3, x, y);
    a4 = _mm256_fmadd_ps(a4, x, y); a5 = _mm256_fmadd_ps(a5, x, y);
    a6 = _mm256_fmadd_ps(a6, x, y); a7 = _mm256_fmadd_ps(a7, x, y);
    a8 = _mm256_fmadd_ps(a8, x, y); a9 = _mm256_fmadd_ps(a9, x, y);
    __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9));
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(_mm256_add_ps(a6, a7), _mm256_add_ps(a8, a9))));
  alignas(32) float r[8];
  _mm256_store_ps(r, s);
  g_sink = g_sink + r[0] + r[7];
  return double(iters) * 10 * 8 * 2;
}

__attribute__((target("avx512f"))) double fma_avx512(uint64_t iters) {
  __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  __m512 a0 = _mm512_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
         a10 = a0, a11 = a0;
  for (uint64_t i = 0; i < iters; ++i) {
    a0 = _mm512_fmadd_ps(a0, x, y); a1 = _mm512_fmadd_ps(a1, x, y);
    a2 = _mm512_fmadd_ps(a2, x, y); a3 = _mm512_fmadd_ps(a3, x, y);
    a4 = _mm512_fmadd_ps(a4, x, y); a5 = _mm512_fmadd_ps(a5, x, y);
    a6 = _mm512_fmadd_ps(a6, x, y); a7 = _mm512_fmadd_ps(a7, x, y);
    a8 = _mm512_fmadd_ps(a8, x, y); a9 = _mm512_fmadd_ps(a9, x, y);
    a10 = _mm512_fmadd_ps(a10, x, y); a11 = _mm512_fmadd_ps(a11, x, y);
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9),
                     "+v"(a10), "+v"(a11));
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  alignas(64) float r[16];
  _mm512_store_ps(r, s);
  g_sink = g_sink + r[0] + r[15];
  return double(iters) * 12 * 16 * 2;
}

// AVX2 int8 dot product the way ggml's Q8 kernels do it: vpmaddubsw (u8 x s8 pairs -> s16),
// vpmaddwd with ones (-> s32), vpaddd. 32 multiply-accumulates per 3 instructions.
__attribute__((target("avx2"))) double int8_avx2(uint64_t iters) {
  __m256i u = _mm256_set1_epi8(1), s = _mm256_set1_epi8(2), ones = _mm256_set1_epi16(1);
  // The products do not depend on the accumulators, so 4 accumulators (vpaddd latency 1) are enough;
  // more would only spill.
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  // Four signed operands, made opaque before each use (the empty asm), so the compiler can neither
  // hoist the loop-invariant products out of the loop nor share one product between two chains.
  __m256i s0 = s, s1 = _mm256_set1_epi8(3), s2 = _mm256_set1_epi8(-2), s3 = _mm256_set1_epi8(-3);
#define TERN_MADD(acc, sv) acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, sv), ones))
  for (uint64_t i = 0; i < iters; ++i) {
    TERN_MADD(a0, s0); TERN_MADD(a1, s1); TERN_MADD(a2, s2); TERN_MADD(a3, s3);
    __asm__ volatile("" : "+x"(s0), "+x"(s1), "+x"(s2), "+x"(s3));
    TERN_MADD(a0, s0); TERN_MADD(a1, s1); TERN_MADD(a2, s2); TERN_MADD(a3, s3);
    __asm__ volatile("" : "+x"(s0), "+x"(s1), "+x"(s2), "+x"(s3));
  }
#undef TERN_MADD
  __m256i t = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
  g_sink = g_sink + _mm256_extract_epi32(t, 0);
  return double(iters) * 8 * 32 * 2;
}

// AVX512-VNNI: vpdpbusd does 64 u8 x s8 multiply-accumulates into 16 s32 lanes in one instruction.
__attribute__((target("avx512f,avx512vnni"))) double int8_avx512vnni(uint64_t iters) {
  __m512i u = _mm512_set1_epi8(1), s = _mm512_set1_epi8(2);
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
          a10 = a0, a11 = a0;
  for (uint64_t i = 0; i < iters; ++i) {
    a0 = _mm512_dpbusd_epi32(a0, u, s); a1 = _mm512_dpbusd_epi32(a1, u, s);
    a2 = _mm512_dpbusd_epi32(a2, u, s); a3 = _mm512_dpbusd_epi32(a3, u, s);
    a4 = _mm512_dpbusd_epi32(a4, u, s); a5 = _mm512_dpbusd_epi32(a5, u, s);
    a6 = _mm512_dpbusd_epi32(a6, u, s); a7 = _mm512_dpbusd_epi32(a7, u, s);
    a8 = _mm512_dpbusd_epi32(a8, u, s); a9 = _mm512_dpbusd_epi32(a9, u, s);
    a10 = _mm512_dpbusd_epi32(a10, u, s); a11 = _mm512_dpbusd_epi32(a11, u, s);
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9),
                     "+v"(a10), "+v"(a11));
  }
  __m512i t = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                               _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
  t = _mm512_add_epi32(t, _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
  alignas(64) int32_t r[16];
  _mm512_store_si512(r, t);
  g_sink = g_sink + r[0] + r[15];
  return double(iters) * 12 * 64 * 2;
}
#endif

// Portable fallback: GCC vector extensions, lowered to whatever SIMD the baseline target has.
double fma_generic(uint64_t iters) {
  typedef float v4f __attribute__((vector_size(16)));
  v4f x = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, y = {1e-7f, 1e-7f, 1e-7f, 1e-7f};
  v4f a[8];
  for (auto& v : a) v = v4f{1, 1, 1, 1};
  for (uint64_t i = 0; i < iters; ++i)
    for (auto& v : a) {
      v = v * x + y;
      __asm__ volatile("" : "+x"(v));
    }
  float t = 0;
  for (auto& v : a) t += v[0];
  g_sink = g_sink + t;
  return double(iters) * 8 * 4 * 2;
}

struct ComputeKernel {
  const char* name;
  double (*run)(uint64_t iters);
};

std::vector<ComputeKernel> fma_kernels() {
  std::vector<ComputeKernel> k;
#if TERN_X86
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) k.push_back({"avx2_fma", fma_avx2});
  if (__builtin_cpu_supports("avx512f")) k.push_back({"avx512f", fma_avx512});
#endif
  if (k.empty()) k.push_back({"generic", fma_generic});
  return k;
}

std::vector<ComputeKernel> int8_kernels() {
  std::vector<ComputeKernel> k;
#if TERN_X86
  if (__builtin_cpu_supports("avx2")) k.push_back({"avx2_maddubs", int8_avx2});
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni"))
    k.push_back({"avx512_vnni", int8_avx512vnni});
#endif
  return k;
}

// Ops per second of kernel on n threads: iterations calibrated on one thread to about 0.1 s.
double measure_compute(const ComputeKernel& k, int n, int reps, const std::vector<int>& cpus) {
  uint64_t iters = 1 << 16;
  for (;;) {
    auto t0 = Clock::now();
    k.run(iters);
    double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (dt > 0.05) {
      iters = uint64_t(double(iters) * 0.1 / dt) + 1;
      break;
    }
    iters *= 4;
  }
  std::atomic<double> ops_per_thread{0};
  double t = time_parallel(n, reps, cpus, [&](int tid) {
    double ops = k.run(iters);
    if (tid == 0) ops_per_thread = ops;
  });
  return ops_per_thread * n / t;
}

// ---------------------------------------------------------------- driver
struct Results {
  std::string cpu, stream_isa;
  std::vector<int> threads;
  std::map<int, double> copy, triad, read;                         // GB/s
  std::map<std::string, std::map<int, double>> fma, int8;          // by ISA, G/s
  std::map<int, double> fma_best, int8_best;
};

double* alloc_array(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 2 << 20, bytes) != 0) {
    std::fprintf(stderr, "machine: cannot allocate %zu MiB\n", bytes >> 20);
    std::exit(1);
  }
#ifdef MADV_HUGEPAGE
  madvise(p, bytes, MADV_HUGEPAGE);  // fewer TLB misses; a hint only
#endif
  return static_cast<double*>(p);
}

Results run(const Options& o) {
  Results r;
  r.cpu = cpu_name();
  std::vector<int> cpus = allowed_cpus();
  int nmax = o.threads > 0 ? o.threads : int(cpus.size());
  r.threads = {1};
  if (nmax > 1) r.threads.push_back(nmax);

  const size_t n = (o.array_mib << 20) / sizeof(double);
  double *a = alloc_array(n * 8), *b = alloc_array(n * 8), *c = alloc_array(n * 8);
  StreamKernels sk = pick_stream_kernels();
  r.stream_isa = sk.isa;
  // Element range of thread tid of nt, in 64-element (one 512-byte) units.
  auto range = [n](int tid, int nt, size_t& lo, size_t& len) {
    size_t units = n / 64, per = units / size_t(nt), extra = units % size_t(nt), t = size_t(tid);
    size_t u0 = t * per + std::min(t, extra);
    lo = u0 * 64;
    len = (per + (t < extra ? 1 : 0)) * 64;
    if (tid == nt - 1) len = n - lo;
  };
  // First touch by the widest thread layout, so pages sit near the threads that use them.
  time_parallel(nmax, 0, cpus, [&](int tid) {
    size_t lo, len;
    range(tid, nmax, lo, len);
    for (size_t i = lo; i < lo + len; ++i) a[i] = 1.0, b[i] = 2.0, c[i] = 0.0;
  });
  std::vector<double> sums(size_t(nmax) * 8);
  for (int nt : r.threads) {
    double t = time_parallel(nt, o.reps, cpus, [&](int tid) {
      size_t lo, len;
      range(tid, nt, lo, len);
      sk.copy(a + lo, c + lo, len);
    });
    r.copy[nt] = 2.0 * 8 * double(n) / t / 1e9;
    t = time_parallel(nt, o.reps, cpus, [&](int tid) {
      size_t lo, len;
      range(tid, nt, lo, len);
      sk.triad(a + lo, b + lo, c + lo, 3.0, len);
    });
    r.triad[nt] = 3.0 * 8 * double(n) / t / 1e9;
    t = time_parallel(nt, o.reps, cpus, [&](int tid) {
      size_t lo, len;
      range(tid, nt, lo, len);
      sums[size_t(tid) * 8] += sk.read(a + lo, len);  // one cache line per thread: no false sharing
    });
    r.read[nt] = 1.0 * 8 * double(n) / t / 1e9;
  }
  double total = 0;
  for (double s : sums) total += s;
  g_sink = g_sink + total;
  std::free(a);
  std::free(b);
  std::free(c);

  for (const auto& k : fma_kernels())
    for (int nt : r.threads) {
      double g = measure_compute(k, nt, o.reps, cpus) / 1e9;
      r.fma[k.name][nt] = g;
      r.fma_best[nt] = std::max(r.fma_best[nt], g);
    }
  for (const auto& k : int8_kernels())
    for (int nt : r.threads) {
      double g = measure_compute(k, nt, o.reps, cpus) / 1e9;
      r.int8[k.name][nt] = g;
      r.int8_best[nt] = std::max(r.int8_best[nt], g);
    }
  return r;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\', out += ch;
    else if (static_cast<unsigned char>(ch) < 0x20) out += ' ';
    else out += ch;
  }
  return out;
}

std::string json_map(const std::map<int, double>& m) {
  std::string s = "{";
  for (auto [k, v] : m) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s\"%d\": %.2f", s.size() > 1 ? ", " : "", k, v);
    s += buf;
  }
  return s + "}";
}

std::string json_nested(const std::map<std::string, std::map<int, double>>& m) {
  std::string s = "{";
  for (const auto& [k, v] : m) s += (s.size() > 1 ? ", \"" : "\"") + k + "\": " + json_map(v);
  return s + "}";
}

std::string to_json(const Results& r, const Options& o) {
  std::string threads;
  for (int t : r.threads) threads += (threads.empty() ? "" : ", ") + std::to_string(t);
  std::string s = "{\n";
  s += "  \"cpu\": \"" + json_escape(r.cpu) + "\",\n";
  s += "  \"threads\": [" + threads + "],\n";
  s += "  \"array_mib\": " + std::to_string(o.array_mib) + ",\n";
  s += "  \"reps\": " + std::to_string(o.reps) + ",\n";
  s += "  \"stream_isa\": \"" + r.stream_isa + "\",\n";
  s += "  \"conventions\": \"GB/s = 1e9 B/s, STREAM byte counts without write-allocate: copy 16 B/elem, triad 24 B/elem, "
       "read 8 B/elem; an FMA is 2 flops; an int8 multiply-accumulate is 2 ops; best of reps\",\n";
  s += "  \"copy_gbs\": " + json_map(r.copy) + ",\n";
  s += "  \"triad_gbs\": " + json_map(r.triad) + ",\n";
  s += "  \"read_gbs\": " + json_map(r.read) + ",\n";
  s += "  \"fma_gflops\": " + json_map(r.fma_best) + ",\n";
  s += "  \"int8_gops\": " + json_map(r.int8_best) + ",\n";
  s += "  \"fma_gflops_by_isa\": " + json_nested(r.fma) + ",\n";
  s += "  \"int8_gops_by_isa\": " + json_nested(r.int8) + "\n";
  return s + "}\n";
}

void print_table(const Results& r, const Options& o) {
  std::printf("cpu: %s\n", r.cpu.c_str());
  std::printf("bandwidth: 3 x %zu MiB arrays, %s kernels, best of %d; STREAM byte counts (copy 16, triad 24, read 8 B/elem)\n",
              o.array_mib, r.stream_isa.c_str(), o.reps);
  std::printf("%-24s", "");
  for (int t : r.threads) std::printf("%14s", (std::to_string(t) + (t == 1 ? " thread" : " threads")).c_str());
  std::printf("\n");
  auto row = [&](const char* name, const std::map<int, double>& m) {
    std::printf("%-24s", name);
    for (int t : r.threads) {
      auto it = m.find(t);
      if (it == m.end()) std::printf("%14s", "-");
      else std::printf("%14.1f", it->second);
    }
    std::printf("\n");
  };
  row("copy GB/s", r.copy);
  row("triad GB/s", r.triad);
  row("read GB/s", r.read);
  for (const auto& [k, m] : r.fma) row(("fp32 " + k + " GFLOP/s").c_str(), m);
  for (const auto& [k, m] : r.int8) row(("int8 " + k + " GOP/s").c_str(), m);
  if (r.int8.empty()) std::printf("int8: no AVX2 or AVX512-VNNI on this CPU\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  Results r = run(o);
  std::string json = to_json(r, o);
  if (!o.save_path.empty()) {
    std::string tmp = o.save_path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f || std::fputs(json.c_str(), f) < 0 || std::fclose(f) != 0 || std::rename(tmp.c_str(), o.save_path.c_str()) != 0) {
      std::fprintf(stderr, "machine: cannot write %s\n", o.save_path.c_str());
      return 1;
    }
  }
  if (o.json) std::fputs(json.c_str(), stdout);
  else print_table(r, o);
  return 0;
}
