#include "ops/ops.h"

#include "core/error.h"

namespace tern {

namespace {
void check_f32(const char* op, const char* name, const TensorView& t) {
  TERN_CHECK(t.dtype == DType::F32, "{}: {} must be f32, got {}", op, name, dtype_name(t.dtype));
  TERN_CHECK(t.nb[0] == sizeof(float), "{}: {} must be contiguous along dimension 0", op, name);
}
}  // namespace

void check_same_shape(const char* op, const TensorView& a, const TensorView& b) {
  TERN_CHECK(a.ne == b.ne, "{}: shape mismatch [{}, {}, {}, {}] vs [{}, {}, {}, {}]", op, a.ne[0], a.ne[1],
             a.ne[2], a.ne[3], b.ne[0], b.ne[1], b.ne[2], b.ne[3]);
}

void check_get_rows(const TensorView& table, int64_t n_ids, const TensorView& out) {
  check_f32("get_rows", "out", out);
  TERN_CHECK(out.ne[0] == table.ne[0] && out.ne[1] == n_ids, "get_rows: out must be [{}, {}]", table.ne[0], n_ids);
}

void check_rms_norm(const TensorView& x, const TensorView& w, const TensorView& out) {
  check_f32("rms_norm", "x", x);
  check_f32("rms_norm", "weight", w);
  check_same_shape("rms_norm", x, out);
  TERN_CHECK(w.ne[0] == x.ne[0], "rms_norm: weight has {} elements, rows have {}", w.ne[0], x.ne[0]);
}

void check_matmul(const TensorView& w, const TensorView& x, const TensorView& y) {
  check_f32("matmul", "x", x);
  check_f32("matmul", "y", y);
  TERN_CHECK(w.ne[0] == x.ne[0], "matmul: weight rows have {} elements, input has {}", w.ne[0], x.ne[0]);
  TERN_CHECK(y.ne[0] == w.ne[1] && y.ne[1] == x.ne[1], "matmul: output must be [{}, {}], is [{}, {}]", w.ne[1],
             x.ne[1], y.ne[0], y.ne[1]);
}

void check_rope(const TensorView& x, const RopeParams& p) {
  check_f32("rope", "x", x);
  TERN_CHECK(p.n_rot > 0 && p.n_rot % 2 == 0 && p.n_rot <= x.ne[0], "rope: n_rot {} must be even and <= head_dim {}",
             p.n_rot, x.ne[0]);
}

void check_kv_store(const TensorView& src, const TensorView& cache) {
  check_f32("kv_store", "src", src);
  TERN_CHECK(is_kv_type(cache.dtype), "kv_store: cache type {} unsupported (f32, f16, q8_0, fp8_e4m3)",
             dtype_name(cache.dtype));
  TERN_CHECK(src.ne[0] % traits(cache.dtype).block_elems == 0, "kv_store: head size {} is not whole {} blocks", src.ne[0],
             dtype_name(cache.dtype));
  TERN_CHECK(src.ne[0] == cache.ne[0] && src.ne[1] == cache.ne[1], "kv_store: src heads do not match the cache");
}

bool is_kv_type(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::Q8_0 || t == DType::F8_E4M3;
}

void check_attention(const AttentionArgs& a) {
  TERN_CHECK(a.k.dtype == a.v.dtype && is_kv_type(a.k.dtype), "attention: cache types {} / {} unsupported",
             dtype_name(a.k.dtype), dtype_name(a.v.dtype));
  check_f32("attention", "q", a.q);
  check_f32("attention", "out", a.out);
  check_same_shape("attention", a.q, a.out);
  TERN_CHECK(a.k.ne[0] == a.q.ne[0] && a.v.ne[0] == a.q.ne[0], "attention: head_dim of q, k and v differ");
  TERN_CHECK(a.k.ne[1] > 0 && a.q.ne[1] % a.k.ne[1] == 0, "attention: {} query heads not a multiple of {} kv heads",
             a.q.ne[1], a.k.ne[1]);
  TERN_CHECK(a.block_size > 0 && a.seqs && a.token_seq && a.token_pos, "attention: missing sequence layout");
}

}  // namespace tern
