// Op signatures shared by every backend. All activations are F32 and contiguous along dimension 0;
// weights may be any GGUF type; the KV cache is F16, F32, Q8_0 (8-bit levels with a scale per 32
// values) or FP8 E4M3. Shapes use ggml order (ne[0] innermost).
//
// The KV cache of one layer is a tensor [head_dim, n_kv_head, n_slots]; a sequence's tokens live in
// fixed-size blocks of slots named by its block table (PagedAttention). A contiguous cache is the case
// of one block per sequence, so the attention kernels never change when paging arrives.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace tern {

enum class RopeLayout : uint8_t {
  Normal,  // rotate adjacent pairs (x[2i], x[2i+1]): ggml's LLAMA_ROPE_TYPE_NORM (Llama)
  NeoX,    // rotate (x[i], x[i + n_rot/2]): GPT-NeoX / HF rotate_half (Qwen 2, Gemma)
};

struct RopeParams {
  int n_rot = 0;  // leading dims of each head that rotate (<= head_dim, even)
  float theta_base = 10000.0f;
  RopeLayout layout = RopeLayout::Normal;
};

// One sequence's view of the paged cache.
struct KvSeq {
  const int32_t* block_table = nullptr;  // physical block ids, in logical order
  int32_t n_blocks = 0;
};

struct AttentionArgs {
  TensorView q;    // F32 [head_dim, n_head, n_tokens]
  TensorView k;    // cache [head_dim, n_kv_head, n_slots]
  TensorView v;    // cache [head_dim, n_kv_head, n_slots]
  TensorView out;  // F32 [head_dim, n_head, n_tokens]
  const KvSeq* seqs = nullptr;
  const int32_t* token_seq = nullptr;  // per token: index into seqs
  const int32_t* token_pos = nullptr;  // per token: its position; attends to positions 0..pos (causal)
  int32_t block_size = 0;              // slots per block
  float scale = 1.0f;                  // usually 1/sqrt(head_dim)
};

// Slot of a logical position within a sequence.
inline int64_t kv_slot(const KvSeq& s, int32_t block_size, int64_t pos) {
  return static_cast<int64_t>(s.block_table[pos / block_size]) * block_size + pos % block_size;
}

// Numerics. By default a backend rounds what enters its dot products as llama.cpp's CPU backend
// does, so that both engines compute the same function of the same file: matmul activations are
// quantised to the weight's vec_dot type and multiplied with ggml's block arithmetic
// (quant::vec_dot), and attention meets an f16 cache with q in f16. A backend
// made with exact activations skips all of that (f32 activations against dequantised weights): more
// accurate, no longer the peer's numbers, and what the float64 oracle checks the model's math with.

// Shape validation shared by all backends (throws tern::Error naming the op and operand).
void check_get_rows(const TensorView& table, int64_t n_ids, const TensorView& out);
void check_rms_norm(const TensorView& x, const TensorView& w, const TensorView& out);
void check_matmul(const TensorView& w, const TensorView& x, const TensorView& y);
void check_rope(const TensorView& x, const RopeParams& p);
void check_kv_store(const TensorView& src, const TensorView& cache);
void check_attention(const AttentionArgs& a);
void check_same_shape(const char* op, const TensorView& a, const TensorView& b);
// The types a KV cache can be stored in.
bool is_kv_type(DType t);

}  // namespace tern
