// Row conversion entry points: validate the length against the type's block size, then hand the
// whole row to the type's family (float / legacy / K-quant reference code).
#include "quant/quant.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "quant/codec.h"

namespace tern::quant {
namespace {

const RowCodec* find_codec(DType t) {
  if (const RowCodec* c = float_codec(t)) return c;
  if (const RowCodec* c = legacy_codec(t)) return c;
  return k_codec(t);
}

int64_t checked_blocks(DType t, int64_t n) {
  const DTypeTraits& tr = traits(t);
  TERN_CHECK(n >= 0 && n % tr.block_elems == 0,
             "{}: row of {} elements is not a multiple of the block size {}", tr.name, n, tr.block_elems);
  return n / tr.block_elems;
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const RowCodec* c = find_codec(t);
  TERN_CHECK(c && c->dequant, "{}: no row conversion to f32 for this type", dtype_name(t));
  c->dequant(static_cast<const uint8_t*>(src), dst, checked_blocks(t, n));
}

void quantize_row(DType t, const float* src, void* dst, int64_t n, const float* importance) {
  const RowCodec* c = find_codec(t);
  TERN_CHECK(c && c->quant, "{}: no quantisation from f32 for this type", dtype_name(t));
  c->quant(src, static_cast<uint8_t*>(dst), checked_blocks(t, n), importance);
}

bool can_quantize(DType t) {
  const RowCodec* c = find_codec(t);
  return c && c->quant;
}

int GroupGrid::nearest(float x) const {
  if (scale == 0) return std::clamp(0, lo, hi);
  const float l = std::nearbyint((x - offset) / scale);
  return l <= static_cast<float>(lo) ? lo : l >= static_cast<float>(hi) ? hi : static_cast<int>(l);
}

int grid_group_size(DType t) {
  const RowCodec* c = find_codec(t);
  return c && c->grids ? c->grid_group : 0;
}

void row_grids(DType t, const void* row, int64_t n, GroupGrid* grids) {
  const RowCodec* c = find_codec(t);
  TERN_CHECK(c && c->grids, "{}: no grid support (GPTQ needs Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q3_K, Q4_K or Q5_K)",
             dtype_name(t));
  c->grids(static_cast<const uint8_t*>(row), grids, checked_blocks(t, n));
}

void set_row_levels(DType t, void* row, int64_t n, const int* levels) {
  const RowCodec* c = find_codec(t);
  TERN_CHECK(c && c->set_levels, "{}: no grid support", dtype_name(t));
  c->set_levels(static_cast<uint8_t*>(row), levels, checked_blocks(t, n));
}

namespace {
const RowCodec& weight_codec(DType w) {
  const RowCodec* c = find_codec(w);
  TERN_CHECK(c && c->dot, "{}: not a matmul weight type (no dot product for it)", dtype_name(w));
  return *c;
}
}  // namespace

DType vec_dot_type(DType w) { return weight_codec(w).dot_type; }

bool is_weight_type(DType w) {
  const RowCodec* c = find_codec(w);
  return c && c->dot;
}

void quantize_activation_row(DType t, const float* src, void* dst, int64_t n) {
  const RowCodec* c = find_codec(t);
  TERN_CHECK(c && c->quant, "{}: no quantisation from f32 for this type", dtype_name(t));
  if (c->quant_activation)
    c->quant_activation(src, static_cast<uint8_t*>(dst), checked_blocks(t, n));
  else
    c->quant(src, static_cast<uint8_t*>(dst), checked_blocks(t, n), nullptr);
}

float vec_dot(DType w, const void* w_row, const void* a_row, int64_t n) {
  const RowCodec& c = weight_codec(w);
  // A weight block and its activation block always cover the same elements.
  return c.dot(static_cast<const uint8_t*>(w_row), static_cast<const uint8_t*>(a_row), checked_blocks(w, n));
}

}  // namespace tern::quant
