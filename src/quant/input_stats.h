// What calibrated quantisers learn about the activations entering one weight matrix: per-channel
// sums of squares (llama.cpp's importance matrix), of magnitudes (AWQ's activation scale), the
// largest magnitudes (SmoothQuant's) and,
// when asked, the full second-moment matrix sum x x^T (GPTQ's and SparseGPT's Hessian, up to a
// factor 2; AWQ's output-error measure). Matrices that share an input (q/k/v, gate/up) share one.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tern {
class ThreadPool;
}

namespace tern::quant {

class InputStats {
 public:
  InputStats(int64_t n_in, bool with_hessian);
  // Statistics read back from an importance matrix file: sums of squares only.
  static InputStats from_sum_sq(std::vector<double> sum_sq, int64_t count);

  // n_tokens activation rows of n_in values each (token-major). The Hessian update, the costly part
  // (n_tokens * n_in^2 / 2 multiply-adds), is split over `pool` when given.
  void add(const float* x, int64_t n_tokens, ThreadPool* pool = nullptr);

  int64_t n_in() const { return n_in_; }
  int64_t count() const { return count_; }  // activation rows seen
  bool has_hessian() const { return !h_.empty(); }
  std::span<const double> sum_sq() const { return sum_sq_; }
  std::span<const double> sum_abs() const { return sum_abs_; }
  // Per channel, the largest |x| seen; empty for statistics read from an importance matrix.
  std::span<const double> max_abs() const { return max_abs_; }
  // The mean second moment (sum x x^T) / count as a full symmetric n_in x n_in matrix, row-major.
  std::vector<double> hessian() const;

 private:
  int64_t n_in_, count_ = 0;
  std::vector<double> sum_sq_, sum_abs_, max_abs_;
  std::vector<double> h_;  // lower triangle in use (row i, columns 0..i), n_in x n_in storage
};

}  // namespace tern::quant
