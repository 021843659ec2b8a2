#include "quant/input_stats.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"

namespace tern::quant {

InputStats::InputStats(int64_t n_in, bool with_hessian)
    : n_in_(n_in), sum_sq_(static_cast<size_t>(n_in)), sum_abs_(static_cast<size_t>(n_in)), max_abs_(static_cast<size_t>(n_in)) {
  TERN_CHECK(n_in > 0, "activation statistics of {} channels", n_in);
  if (with_hessian) h_.assign(static_cast<size_t>(n_in * n_in), 0.0);
}

InputStats InputStats::from_sum_sq(std::vector<double> sum_sq, int64_t count) {
  InputStats s(static_cast<int64_t>(sum_sq.size()), false);
  TERN_CHECK(count >= 0, "importance matrix with a negative count {}", count);
  s.sum_sq_ = std::move(sum_sq);
  s.max_abs_.clear();  // not in the file
  s.count_ = count;
  return s;
}

namespace {

// The costly inner loop is compiled for AVX-512 and AVX2 as well and picked at load (the quantisers
// are not in the per-ISA kernel units, but collecting a Hessian is most of a calibration's time).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TERN_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TERN_ISA_CLONES
#endif

constexpr int kR = 4, kC = 64;

// acc[r][c] = sum over t of x[t][i + r] * x[t][j + c]: one full 4 x 64 tile.
TERN_ISA_CLONES void tile_products(const float* x, int64_t n_tokens, int64_t n, int64_t i, int64_t j,
                                   float (&acc)[kR][kC]) {
  for (auto& row : acc) std::fill(row, row + kC, 0.0f);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * n;
    for (int r = 0; r < kR; ++r) {
      const float a = xt[i + r];
      for (int c = 0; c < kC; ++c) acc[r][c] += a * xt[j + c];
    }
  }
}

// H[i0..i1) x [0..i1) += X^T X over the rows of x, on and below the diagonal. Sums of one call run in
// float over at most a few hundred tokens, then land in double. Edge tiles read a zero-padded copy.
void hessian_strip(const float* x, int64_t n_tokens, int64_t n, int64_t i0, int64_t i1, double* h) {
  float acc[kR][kC];
  std::vector<float> pad;
  for (int64_t i = i0; i < i1; i += kR) {
    const int64_t ri = std::min<int64_t>(kR, i1 - i), jend = i + ri;
    for (int64_t j = 0; j < jend; j += kC) {
      const int64_t cj = std::min<int64_t>(kC, jend - j);
      if (ri == kR && j + kC <= n) {
        tile_products(x, n_tokens, n, i, j, acc);
      } else {  // a copy of the tile's rows and columns, zero beyond the matrix
        pad.assign(static_cast<size_t>(n_tokens * (kR + kC)), 0.0f);
        for (int64_t t = 0; t < n_tokens; ++t) {
          for (int64_t r = 0; r < ri; ++r) pad[t * (kR + kC) + r] = x[t * n + i + r];
          for (int64_t c = 0; c < cj; ++c) pad[t * (kR + kC) + kR + c] = x[t * n + j + c];
        }
        tile_products(pad.data(), n_tokens, kR + kC, 0, kR, acc);
      }
      for (int64_t r = 0; r < ri; ++r)
        for (int64_t c = 0; c < cj && j + c <= i + r; ++c) h[(i + r) * n + j + c] += acc[r][c];
    }
  }
}

}  // namespace

void InputStats::add(const float* x, int64_t n_tokens, ThreadPool* pool) {
  const int64_t n = n_in_;
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[t * n + i];
      sum_sq_[i] += v * v;
      sum_abs_[i] += std::fabs(v);
      max_abs_[i] = std::max(max_abs_[i], std::fabs(v));
    }
  count_ += n_tokens;
  if (h_.empty()) return;
  // Row strips of the lower triangle; strip i costs ~i, so strips are handed out dynamically.
  constexpr int64_t kStrip = 32;
  const int64_t strips = (n + kStrip - 1) / kStrip;
  auto strip = [&](int64_t s, int64_t) {
    const int64_t i0 = s * kStrip, i1 = std::min(n, i0 + kStrip);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += 256)  // float sums over at most 256 tokens at a time
      hessian_strip(x + t0 * n, std::min<int64_t>(256, n_tokens - t0), n, i0, i1, h_.data());
  };
  if (pool)
    pool->parallel_for_dynamic(strips, strip);
  else
    for (int64_t s = 0; s < strips; ++s) strip(s, s + 1);
}

std::vector<double> InputStats::hessian() const {
  TERN_CHECK(!h_.empty(), "no Hessian was collected for this input");
  const int64_t n = n_in_;
  std::vector<double> out(h_.size());
  const double inv = count_ > 0 ? 1.0 / static_cast<double>(count_) : 0.0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) out[i * n + j] = out[j * n + i] = h_[i * n + j] * inv;
  return out;
}

}  // namespace tern::quant
