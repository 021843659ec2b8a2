#include "quant/prune.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"

namespace tern::quant {

SparsityPattern parse_sparsity(std::string_view pattern, double sparsity) {
  SparsityPattern p;
  if (pattern.empty()) {
    TERN_CHECK(sparsity > 0 && sparsity < 1, "--sparsity {}: must be between 0 and 1", sparsity);
    p.sparsity = sparsity;
    return p;
  }
  const auto colon = pattern.find(':');
  auto num = [&](std::string_view s, int& out) {
    return !s.empty() && std::from_chars(s.data(), s.data() + s.size(), out).ptr == s.data() + s.size();
  };
  TERN_CHECK(colon != std::string_view::npos && num(pattern.substr(0, colon), p.keep) &&
                 num(pattern.substr(colon + 1), p.group) && p.keep > 0 && p.keep < p.group && p.group <= 64,
             "--pattern {}: expected N:M with 0 < N < M <= 64 (N of every M weights kept, e.g. 2:4)", pattern);
  return p;
}

namespace {

// Indices of the k lowest scores of s[0..n) (ties: lower index first), marked in zero[].
void mark_lowest(const float* s, int64_t n, int64_t k, std::vector<int32_t>& idx, uint8_t* zero) {
  idx.resize(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  const auto less = [s](int32_t a, int32_t b) { return s[a] < s[b] || (s[a] == s[b] && a < b); };
  if (k < n) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), less);
  std::fill(zero, zero + n, 0);
  for (int64_t i = 0; i < std::min(k, n); ++i) zero[idx[i]] = 1;
}

}  // namespace

void prune_by_score(float* w, const float* score, int64_t rows, int64_t n, const SparsityPattern& p) {
  TERN_CHECK(!p.n_of_m() || n % p.group == 0, "pruning {}:{}: rows of {} are not whole groups", p.keep, p.group, n);
  std::vector<int32_t> idx;
  std::vector<uint8_t> zero(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    float* wr = w + r * n;
    const float* sr = score + r * n;
    if (p.n_of_m()) {
      for (int64_t g = 0; g < n; g += p.group) mark_lowest(sr + g, p.group, p.group - p.keep, idx, zero.data() + g);
    } else {
      mark_lowest(sr, n, static_cast<int64_t>(std::floor(p.sparsity * static_cast<double>(n))), idx, zero.data());
    }
    for (int64_t i = 0; i < n; ++i)
      if (zero[i]) wr[i] = 0.0f;
  }
}

void magnitude_prune(float* w, int64_t rows, int64_t n, const SparsityPattern& p) {
  std::vector<float> s(static_cast<size_t>(rows * n));
  for (size_t i = 0; i < s.size(); ++i) s[i] = std::fabs(w[i]);
  prune_by_score(w, s.data(), rows, n, p);
}

void wanda_prune(float* w, int64_t rows, int64_t n, std::span<const double> sum_sq, const SparsityPattern& p) {
  TERN_CHECK(static_cast<int64_t>(sum_sq.size()) == n, "Wanda: {} input norms for rows of {}", sum_sq.size(), n);
  std::vector<float> norm(static_cast<size_t>(n)), s(static_cast<size_t>(rows * n));
  for (int64_t j = 0; j < n; ++j) norm[j] = static_cast<float>(std::sqrt(sum_sq[j]));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) s[r * n + j] = std::fabs(w[r * n + j]) * norm[j];
  prune_by_score(w, s.data(), rows, n, p);
}

void sparsegpt_prune(float* w, int64_t rows, int64_t n, const GptqFactor& f, const SparsityPattern& p,
                     ThreadPool* pool, int64_t block) {
  TERN_CHECK(f.n == n, "SparseGPT: a factor of {} columns for rows of {}", f.n, n);
  for (int64_t k = 0; k < n; ++k) TERN_CHECK(f.order[k] == k, "SparseGPT: the factor must keep the columns in order");
  TERN_CHECK(!p.n_of_m() || (n % p.group == 0 && block % p.group == 0), "SparseGPT {}:{}: rows of {} are not whole groups",
             p.keep, p.group, n);
  std::vector<double> ws(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) ws[r * n + j] = f.dead[j] ? 0.0 : w[r * n + j];
  const double* u = f.u.data();
  std::vector<uint8_t> zero(static_cast<size_t>(rows * block));
  std::vector<float> score;
  std::vector<int32_t> idx;
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t b1 = std::min(n, b0 + block), nb = b1 - b0;
    if (!p.n_of_m()) {
      // The block's mask over all its rows at once: the lowest w^2 / U_jj^2 as the sweep left them.
      score.resize(static_cast<size_t>(rows * nb));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = b0; j < b1; ++j) {
          const double x = ws[r * n + j] / u[j * n + j];
          score[r * nb + (j - b0)] = static_cast<float>(x * x);
        }
      const int64_t k = static_cast<int64_t>(std::floor(p.sparsity * static_cast<double>(rows * nb)));
      std::vector<uint8_t> flat(static_cast<size_t>(rows * nb));
      mark_lowest(score.data(), rows * nb, k, idx, flat.data());
      for (int64_t r = 0; r < rows; ++r) std::copy_n(flat.data() + r * nb, nb, zero.data() + r * block);
    }
    auto sweep = [&](int64_t r0, int64_t r1) {
      std::vector<int32_t> gidx;
      std::vector<float> gs(static_cast<size_t>(std::max(p.group, 1)));
      for (int64_t r = r0; r < r1; ++r) {
        double* wr = ws.data() + r * n;
        uint8_t* zr = zero.data() + r * block;
        for (int64_t j = b0; j < b1; ++j) {
          if (p.n_of_m() && (j - b0) % p.group == 0) {  // this group's mask, from the row as it is now
            for (int e = 0; e < p.group; ++e) {
              const double x = wr[j + e] / u[(j + e) * n + j + e];
              gs[e] = static_cast<float>(x * x);
            }
            mark_lowest(gs.data(), p.group, p.group - p.keep, gidx, zr + (j - b0));
          }
          const double q = zr[j - b0] ? 0.0 : wr[j];
          const double err = (wr[j] - q) / u[j * n + j];
          wr[j] = q;
          const double* uj = u + j * n;
          for (int64_t c = j + 1; c < n; ++c) wr[c] -= err * uj[c];
        }
      }
    };
    if (pool)
      pool->parallel_for(rows, sweep);
    else
      sweep(0, rows);
  }
  for (size_t i = 0; i < ws.size(); ++i) w[i] = static_cast<float>(ws[i]);
}

}  // namespace tern::quant
