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

// The backend's on/off environment switches (TERN_CUDA_GRAPHS, _FUSE, _OVERLAP, _PRELOAD, _STREAM,
// _TC_DECODE, _TIMING, _WGMMA): "0" is off, "1" is on, anything else (or unset) leaves `fallback`.
bool env_switch(const char* name, bool fallback);
// The integer settings (TERN_CUDA_FLASH_STAGES, _FLASH_KEYS, _FLASH_PROBE): the variable's value
// when it is a whole number, `fallback` otherwise (or unset).
int env_int(const char* name, int fallback);

// --- element-wise (elementwise.cu) -------------------------------------------------------------
struct Activation;
// `rounded` (type F32: none) also receives the output rounded for the matmul after the op
// (F16/BF16 any n; Q8_0/Q8_1 n a multiple of 32): see Activation below.
void rms_norm(const float* x, const float* w, float* out, int64_t n, int64_t rows, float eps,
              const Activation& rounded, cudaStream_t s);
// x += d, then out = rms_norm(x) (out may alias d).
void add_rms_norm(float* x, const float* d, const float* w, float* out, int64_t n, int64_t rows, float eps,
                  const Activation& rounded, cudaStream_t s);
// q [d, q_heads, T] and k [d, k_heads, T] (k_heads 0: q alone) in place, one launch;
// theta_scale = base^(-2/n_rot).
void rope(float* q, float* k, const int32_t* pos, int64_t d, int64_t q_heads, int64_t k_heads, int64_t T, int n_rot,
          float theta_scale, bool neox, cudaStream_t s);
// rounded: rows of rounded.n_in elements.
void swiglu(const float* gate, const float* up, float* out, int64_t n, const Activation& rounded, cudaStream_t s);
void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t s);
// cache[:, :, slots[t]] = src[:, :, t], converted to the cache's type (F16 or F32); and the same
// of src2 into cache2 in the same launch (a layer's V after its K) unless src2 is null.
void kv_store(const float* src, void* cache, const float* src2, void* cache2, DType cache_type, const int32_t* slots,
              int64_t d, int64_t heads, int64_t T, cudaStream_t s);
// rope(q, k) as above, then k and v stored at their slots as kv_store(k, k_cache, v, v_cache) does:
// one launch, the same bits. k and v [d, k_heads, T].
void rope_store(float* q, float* k, const float* v, const int32_t* pos, void* k_cache, void* v_cache, DType cache_type,
                const int32_t* slots, int64_t d, int64_t q_heads, int64_t k_heads, int64_t T, int n_rot,
                float theta_scale, bool neox, cudaStream_t s);
void f32_to_f16(const float* x, void* out, int64_t n, cudaStream_t s);
void f32_to_bf16(const float* x, void* out, int64_t n, cudaStream_t s);

// --- weights (matmul.cu) -----------------------------------------------------------------------
// Layouts of a weight in device memory: the file's rows of GGUF blocks, or (Q4_0, Q4_1, Q8_0,
// Q6_K) the blocks' quants and scales in two arrays so that each 32-element unit's quants are
// aligned 16-byte loads (Q6_K: ql, qh and the int8 scales of a 256-element block, 208 bytes, its f16
// d in the second array).
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

// out[:, i] = dequant(table row ids[i])
void get_rows(const Weight& table, const int32_t* ids, int64_t n, float* out, cudaStream_t s);

// A matmul's input as the weight type's dot products take it (quant::vec_dot_type), rounded as the
// CPU backend rounds it (activation.cuh): F32 as is (also the exact mode for every weight type),
// F16/BF16, or 8-bit blocks Q8_0/Q8_1 (32 elements per scale) and Q8_K (256).
struct Activation {
  DType type = DType::F32;
  const void* q = nullptr;   // F32: the input; F16/BF16: [T][n_in] 16-bit; Q8_*: int8 levels [T][n_in]
  const float* d = nullptr;  // Q8_*: [T][n_in / group] scales, as the CPU's blocks hold them
  const float* s = nullptr;  // Q8_1: [T][n_in / 32] d * (sum of levels), f16-rounded
  int64_t n_in = 0;
};
// Scratch bytes an activation of `type` needs, and where its parts lie in that scratch (F32: x).
size_t activation_bytes(DType type, int64_t n_in, int64_t n_tok);
Activation activation_view(DType type, const float* x, int64_t n_in, int64_t n_tok, void* scratch);
// Writes x [n_tok][a.n_in] into the activation a (from activation_view); nothing for F32.
void quantize_activation(const Activation& a, const float* x, int64_t n_tok, cudaStream_t s);

// y_i[j, t] = sum_k w_i[k, j] x[k, t] for weights sharing one input (QKV, gate and up: one launch),
// all of one type, layout and n_in; x in the type's activation form or F32. Weights are read once
// per 8 tokens; a unit's dot product is the reference's vec_dot, the units are summed in a fixed
// order, so a token's result never depends on the other tokens.
inline constexpr int kMaxGemvWeights = 3;
void gemv(const Weight* w, float* const* y, int n_weights, const Activation& x, int64_t n_tok, cudaStream_t s);
// out[j, t] = silu(gate[j] x[:, t]) * (up[j] x[:, t]): the feed-forward's gate and up GEMVs with
// SwiGLU applied as they finish (each warp takes row j of both), the same bits as gemv of the two
// then swiglu. F32, F16 and BF16 weights (whose down projection takes a 16-bit or f32 input).
// `rounded` (F32: none; F16 or BF16) also receives out rounded for the down projection.
void gemv_swiglu(const Weight& gate, const Weight& up, float* out, const Activation& x, int64_t n_tok,
                 const Activation& rounded, cudaStream_t s);
// The weight types gemv_swiglu takes, and the types it may round its output to.
constexpr bool glu_supports(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
// The weight as f16 rows [n_out][n_in] (for cuBLAS).
void dequant_f16(const Weight& w, void* out, cudaStream_t s);

// --- sampling (top_k.cu) ------------------------------------------------------------------------
// The k best of each of `rows` rows of n logits, in the sampler's order (core/top_k.h), into
// values and ids ([rows][k], device memory); 0 < k <= min(n, kMaxTopK).
inline constexpr int kMaxTopK = 256;
void top_k(const float* logits, int64_t n, int64_t rows, int k, float* values, int32_t* ids, cudaStream_t s);

// --- attention (flash_attention.cu, decode_attention.cu) -------------------------------------
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

// Once per process before any launch (and outside graph capture): kernel attributes (the shared
// memory opt-ins of the attention and top-k kernels).
void prepare_flash_attention();
void prepare_decode_attention();
void prepare_top_k();
inline void prepare_kernels() {
  prepare_flash_attention();
  prepare_decode_attention();
  prepare_top_k();
}
// Head sizes the kernels are instantiated for.
bool flash_supports(int d);
bool decode_supports(int d);

void flash_attention(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                     const FlashTile* tiles, int n_tiles, const AttnDims& dims, cudaStream_t s);
// Tiles one block of flash_attention takes, side by side in `tiles`: consecutive tiles of one
// sequence sharing each K and V tile they load (2; TERN_CUDA_FLASH_PAIRS=0: 1). A plan pads each
// sequence's run of tiles with empty ones (n = 0) to a multiple of it.
int flash_tiles_per_block();
// Whether flash_attention runs its wgmma kernels: a Hopper GPU (compute capability 9.0) and
// TERN_CUDA_WGMMA not 0; otherwise the mma.sync kernels (decided once per process).
bool flash_wgmma();
// Whether decode attention over f16 caches with head size 64 or 128 runs on the tensor cores
// (decode_tc_kernel); TERN_CUDA_TC_DECODE=0 runs the f32-arithmetic kernel of the other cases.
bool decode_tensor_cores();
// partial: scratch of decode_partial_floats(n_items, max_splits, dims) floats (unused when
// max_splits is 1). `rounded` (type F32: none) also receives out rounded for the output projection,
// rows of n_head * d (every token of out must be an item).
size_t decode_partial_floats(int n_items, int max_splits, const AttnDims& dims);
void decode_attention(const float* q, const void* k, const void* v, float* out, const KvSeq* seqs,
                      const DecodeItem* items, int n_items, int max_splits, float* partial, const AttnDims& dims,
                      const Activation& rounded, cudaStream_t s);

}  // namespace tern::cuda
