// Scalar reference for every op: plain loops, double accumulation, no threads, never optimised.
// It is the oracle the fast backends are tested against; it honours arbitrary strides so that a
// backend may call it on sub-views (row ranges) too.
#pragma once

#include <memory>

#include "ops/backend.h"

namespace tern::ref {

void get_rows(const TensorView& table, const int32_t* ids, int64_t n, const TensorView& out);
void rms_norm(const TensorView& x, const TensorView& w, float eps, const TensorView& out);
// `x_rounded` must already hold x rounded through activation_type_for(w.dtype) (see round_activations);
// `w_row` is scratch for one dequantised weight row (w.ne[0] floats).
void matmul_rows(const TensorView& w, const TensorView& x_rounded, const TensorView& y, float* w_row);
void matmul(const TensorView& w, const TensorView& x, const TensorView& y, bool exact_activations = false);
// Rounds each row of x to type t and back (what llama.cpp's quantised dot products see). scratch: a
// row of t's bytes.
void round_activations(DType t, const TensorView& x, const TensorView& out, void* scratch);
void rope(const TensorView& x, const int32_t* pos, const RopeParams& p);
void kv_store(const TensorView& src, const TensorView& cache, const int32_t* slots);
// Attention for tokens [t0, t1) of a.
void attention_tokens(const AttentionArgs& a, int64_t t0, int64_t t1);
void attention(const AttentionArgs& a);
void swiglu(const TensorView& gate, const TensorView& up, const TensorView& out);
void add(const TensorView& a, const TensorView& b, const TensorView& out);

// The reference as a Backend, so tests and models can run on it.
std::unique_ptr<Backend> make_backend(bool exact_activations = false);

}  // namespace tern::ref
