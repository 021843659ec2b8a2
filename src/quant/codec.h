// How quant.cpp reaches the per-family reference code: each family file exposes a table lookup
// returning the block-loop functions for a type, built from one per-block encode/decode pair.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "quant/quant.h"

namespace tern::quant {

struct RowCodec {
  void (*dequant)(const uint8_t* src, float* dst, int64_t nblocks);
  void (*quant)(const float* src, uint8_t* dst, int64_t nblocks, const float* importance);
  // Activation rows as ggml-cpu quantises them before a dot product; null where that is `quant`.
  void (*quant_activation)(const float* src, uint8_t* dst, int64_t nblocks) = nullptr;
  // As a weight: the activation type its dot products take (ggml's vec_dot_type) and the dot
  // product of nblocks weight blocks with as many activation blocks; dot is null for types that
  // are never weights (Q8_1, Q8_K).
  DType dot_type = DType::F32;
  float (*dot)(const uint8_t* w, const uint8_t* a, int64_t nblocks) = nullptr;
  // The affine grids of the block's groups (grid_group elements each) and the rewriting of its
  // levels with the stored scales kept (quant.h, GroupGrid); null where unsupported.
  int grid_group = 0;
  void (*grids)(const uint8_t* src, GroupGrid* out, int64_t nblocks) = nullptr;
  void (*set_levels)(uint8_t* dst, const int* levels, int64_t nblocks) = nullptr;
};

// Each returns null for a type outside its family.
const RowCodec* float_codec(DType t);   // quant_float.cpp
const RowCodec* legacy_codec(DType t);  // quant_legacy.cpp
const RowCodec* k_codec(DType t);       // quant_k.cpp

// Blocks are copied through a local struct: rows in a mapped file need not be aligned for the
// struct's u16/f32 fields, and a copy keeps every write inside the caller's buffer by construction.
template <class Block, int QK, void (*Decode)(const Block&, float*)>
void dequant_blocks(const uint8_t* src, float* dst, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; ++i) {
    Block b;
    std::memcpy(&b, src + i * sizeof(Block), sizeof(Block));
    Decode(b, dst + i * QK);
  }
}

template <class Block, int QK, void (*Encode)(const float*, const float*, Block&)>
void quant_blocks(const float* src, uint8_t* dst, int64_t nblocks, const float* importance) {
  for (int64_t i = 0; i < nblocks; ++i) {
    Block b{};
    Encode(src + i * QK, importance ? importance + i * QK : nullptr, b);
    std::memcpy(dst + i * sizeof(Block), &b, sizeof(Block));
  }
}

template <class Block, int QK, void (*Decode)(const Block&, float*),
          void (*Encode)(const float*, const float*, Block&)>
constexpr RowCodec make_codec() {
  return {&dequant_blocks<Block, QK, Decode>, &quant_blocks<Block, QK, Encode>};
}

template <class W, class A, float (*Dot)(const W&, const A&)>
float dot_blocks(const uint8_t* w, const uint8_t* a, int64_t nblocks) {
  float sum = 0;  // float across blocks, as ggml
  for (int64_t i = 0; i < nblocks; ++i) {
    W wb;
    A ab;
    std::memcpy(&wb, w + i * sizeof(W), sizeof(W));
    std::memcpy(&ab, a + i * sizeof(A), sizeof(A));
    sum += Dot(wb, ab);
  }
  return sum;
}

// A dot product through both blocks' decoded values. For formats whose ggml dot is algebraically
// the decoded one (the float types, the K-quants against Q8_K, whose mins meet the activation's exact
// integer group sums), this differs from ggml's only in float summation order.
template <class W, class A, int QK, void (*DecodeW)(const W&, float*), void (*DecodeA)(const A&, float*)>
float dot_decoded(const W& w, const A& a) {
  float wf[QK], af[QK];
  DecodeW(w, wf);
  DecodeA(a, af);
  float sum = 0;
  for (int e = 0; e < QK; ++e) sum += wf[e] * af[e];
  return sum;
}

template <class W, class A, int QK, float (*Dot)(const W&, const A&)>
constexpr RowCodec with_dot(RowCodec c, DType dot_type) {
  c.dot_type = dot_type;
  c.dot = &dot_blocks<W, A, Dot>;
  return c;
}

// K::grids(const Block&, GroupGrid*) and K::set_levels(Block&, const int*) for one block of QK elements.
template <class Block, int QK, int Group, class K>
constexpr RowCodec with_grids(RowCodec c) {
  c.grid_group = Group;
  c.grids = [](const uint8_t* src, GroupGrid* out, int64_t nblocks) {
    for (int64_t i = 0; i < nblocks; ++i) {
      Block b;
      std::memcpy(&b, src + i * sizeof(Block), sizeof(Block));
      K::grids(b, out + i * (QK / Group));
    }
  };
  c.set_levels = [](uint8_t* dst, const int* levels, int64_t nblocks) {
    for (int64_t i = 0; i < nblocks; ++i) {
      Block b;
      std::memcpy(&b, dst + i * sizeof(Block), sizeof(Block));
      K::set_levels(b, levels + i * QK);
      std::memcpy(dst + i * sizeof(Block), &b, sizeof(Block));
    }
  };
  return c;
}

template <class Block, int QK, void (*Encode)(const float*, const float*, Block&)>
void quant_activation_blocks(const float* src, uint8_t* dst, int64_t nblocks) {
  quant_blocks<Block, QK, Encode>(src, dst, nblocks, nullptr);
}

template <class Block, int QK, void (*Encode)(const float*, const float*, Block&)>
constexpr RowCodec with_activation(RowCodec c) {
  c.quant_activation = &quant_activation_blocks<Block, QK, Encode>;
  return c;
}

}  // namespace tern::quant
