// How quant.cpp reaches the per-family reference code: each family file exposes a table lookup
// returning the block-loop functions for a type, built from one per-block encode/decode pair.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace tern::quant {

struct RowCodec {
  void (*dequant)(const uint8_t* src, float* dst, int64_t nblocks);
  void (*quant)(const float* src, uint8_t* dst, int64_t nblocks, const float* importance);
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

}  // namespace tern::quant
