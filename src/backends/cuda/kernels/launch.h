// Host-callable launchers of the CUDA kernels (kernels/*.cu), for the backend (cuda_backend.cpp).
// Pointers are device memory; activations are contiguous F32 rows; every launcher checks the launch
// and throws tern::Error on failure. Shapes use ggml order as in ops/ops.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "ops/ops.h"

namespace tern::cuda {

// Throws tern::Error naming `what` when `e` is an error (and the last launch error otherwise).
void check(cudaError_t e, const char* what);
void check_launch(const char* kernel);

// --- element-wise (elementwise.cu) -------------------------------------------------------------
void rms_norm(const float* x, const float* w, float* out, int64_t n, int64_t rows, float eps, cudaStream_t s);
// x [d, heads, T] in place; theta_scale = base^(-2/n_rot).
void rope(float* x, const int32_t* pos, int64_t d, int64_t heads, int64_t T, int n_rot, float theta_scale, bool neox,
          cudaStream_t s);
void swiglu(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s);
void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t s);
// cache[:, :, slots[t]] = src[:, :, t], converted to the cache's type (F16 or F32).
void kv_store(const float* src, void* cache, DType cache_type, const int32_t* slots, int64_t d, int64_t heads,
              int64_t T, cudaStream_t s);
void f32_to_f16(const float* x, void* out, int64_t n, cudaStream_t s);
void f32_to_bf16(const float* x, void* out, int64_t n, cudaStream_t s);

// --- weights (matmul.cu) -----------------------------------------------------------------------
// Layouts of a weight in device memory: the file's rows of GGUF blocks, or (Q4_0, Q4_1, Q8_0) the
// blocks' quants and scales in two arrays so that each 32-element unit's quants are one aligned
// 16- or 32-byte load.
enum Layout : uint8_t { kFileLayout = 0, kSplitLayout = 1 };

struct Weight {
  const void* data = nullptr;
  DType type = DType::F32;
  uint8_t layout = kFileLayout;
  int64_t n_in = 0, n_out = 0;
};

bool has_split_layout(DType t);
// Rearranges n_out rows of n_in elements from the file's layout into the split layout (host memory).
void split_layout(DType t, const uint8_t* src, int64_t n_in, int64_t n_out, uint8_t* dst);

// out[:, i] = dequant(table row ids[i]) (file layout)
void get_rows(const Weight& table, const int32_t* ids, int64_t n, float* out, cudaStream_t s);
// y[j, t] = sum_i w[i, j] x[i, t] for t < n_tok, read once per 8 tokens (decode and small batches).
void gemv(const Weight& w, const float* x, int64_t n_tok, float* y, cudaStream_t s);
// The weight as f16 rows [n_out][n_in] (for cuBLAS).
void dequant_f16(const Weight& w, void* out, cudaStream_t s);

// --- attention (attention.cu) ------------------------------------------------------------------
struct AttnDims {
  int d = 0, n_head = 0, n_kv_head = 0, block_size = 0;
  float scale = 1.0f;
  DType cache_type = DType::F16;
};

// Up to kFlashTileTokens consecutive tokens of one sequence (positions pos0 .. pos0 + n - 1).
inline constexpr int kFlashTileTokens = 64;
struct FlashTile {
  int32_t t0, n, seq, pos0;
};
// One token whose attention runs split into segments of kSplitPositions keys, merged after.
inline constexpr int kSplitPositions = 256;
struct DecodeItem {
  int32_t token, seq, n_kv, pad;
};

// Head sizes the kernels are instantiated for.
bool flash_supports(int d);
bool decode_supports(int d);

void flash_attention(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                     const FlashTile* tiles, int n_tiles, const AttnDims& dims, cudaStream_t s);
// partial: scratch of decode_partial_floats(n_items, max_splits, dims) floats.
size_t decode_partial_floats(int n_items, int max_splits, const AttnDims& dims);
void decode_attention(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                      const DecodeItem* items, int n_items, int max_splits, float* partial, const AttnDims& dims,
                      cudaStream_t s);

}  // namespace tern::cuda
