#include "backends/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "core/error.h"
#include "backends/cpu/attention.h"
#include "backends/cpu/kernels/kernels.h"
#include "backends/cpu/repack.h"
#include "backends/cpu/weight_arena.h"
#include "core/thread_pool.h"
#include "ops/ref/ref_ops.h"
#include "quant/quant.h"

namespace tern {
namespace {

// Sub-view of rows [r0, r1) of dimension `dim`.
TensorView slice(const TensorView& t, int dim, int64_t r0, int64_t r1) {
  TensorView s = t;
  s.data = static_cast<char*>(t.data) + r0 * t.nb[dim];
  s.ne[dim] = r1 - r0;
  return s;
}

// Per-thread scratch that grows to the largest size seen and is then reused: no allocation once
// the first forward pass has run.
template <typename T>
T* scratch(std::vector<T>& buf, size_t n) {
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendConfig& c)
      : pool_(c.n_threads > 0 ? c.n_threads : default_thread_count()),
        exact_(c.exact_activations),
        isa_(c.isa ? *c.isa : cpu::selected_isa()),
        kernels_(checked_kernels(isa_)) {}

  static const cpu::Kernels& checked_kernels(cpu::Isa isa) {
    TERN_CHECK(cpu::isa_supported(isa), "cpu backend: this CPU cannot run the {} kernels", cpu::isa_name(isa));
    return cpu::kernels(isa);
  }

  std::string_view name() const override { return "cpu"; }

  // Q4_0, Q4_1, Q8_0 and the K-quants' matmul weights with whole groups of eight rows are repacked
  // (backends/cpu/repack.h), on every ISA alike so that all variants keep computing the same bits.
  // Exact mode keeps the file's layout (its dequantising matmul reads rows).
  TensorView prepare_weight(const TensorView& w) override {
    const Grouped* g = grouped_for(w.dtype);
    if (exact_ || !g || w.ne[1] % 8 != 0 || w.ne[2] * w.ne[3] != 1 || w.layout != 0) return w;
    const size_t bytes = g->group_bytes(w.ne[0]) * static_cast<size_t>(w.ne[1] / 8);
    // The arena's pages, not make_unique<uint8_t[]>: that would zero every page before the repack
    // writes it, and would not be on huge pages (weight_arena.h says why that matters).
    auto* dst = static_cast<uint8_t*>(prepared_.allocate(bytes));
    const auto* src = static_cast<const uint8_t*>(w.data);
    const size_t group_bytes = g->group_bytes(w.ne[0]);
    pool_.parallel_for(w.ne[1] / 8, [&](int64_t g0, int64_t g1) {
      g->repack(src + g0 * 8 * w.nb[1], w.nb[1], (g1 - g0) * 8, w.ne[0], dst + g0 * group_bytes);
    });
    TensorView r = w;
    r.data = dst;
    r.layout = g->layout;
    return r;
  }
  bool supports_weight(DType t) const override { return quant::is_weight_type(t); }

  // Norm vectors and other small tensors are copied out of the file, whose pages the loader then
  // drops: read every step, each kept a page of the mapping resident, and with the page cache's
  // large folios a whole 2 MiB mapping around it (14 MiB of SmolLM2's file after load). Large
  // tables (the token embedding, read a row at a time) stay in the file.
  TensorView place_weight(const TensorView& w) override {
    const size_t bytes = w.row_size() * static_cast<size_t>(w.nrows());
    if (w.layout != 0 || bytes > kCopiedWeightBytes) return w;
    TensorView r = w;
    r.data = prepared_.allocate(bytes);
    std::memcpy(r.data, w.data, bytes);
    return r;
  }
  static constexpr size_t kCopiedWeightBytes = size_t{1} << 20;

  void get_rows(const TensorView& table, const int32_t* ids, int64_t n, const TensorView& out) override {
    rounded_ = {};
    if (table.layout == 0) return ref::get_rows(table, ids, n, out);
    // A table repacked for the matmul (a tied output head): each id's row comes out of its group
    // of eight, undone into the file's layout, then dequantised as the reference does.
    check_get_rows(table, n, out);
    const Grouped& g = grouped_layout(table.layout);
    const size_t row_bytes = table.nb[1], group_bytes = g.group_bytes(table.ne[0]);
    thread_local std::vector<uint8_t> group_rows;
    uint8_t* rows = scratch(group_rows, 8 * row_bytes);
    for (int64_t i = 0; i < n; ++i) {
      TERN_CHECK(ids[i] >= 0 && ids[i] < table.ne[1], "get_rows: id {} outside [0, {})", ids[i], table.ne[1]);
      g.unpack(static_cast<const uint8_t*>(table.data) + ids[i] / 8 * group_bytes, table.ne[0], rows, row_bytes);
      quant::dequantize_row(table.dtype, rows + ids[i] % 8 * row_bytes, static_cast<float*>(out.row(i)), table.ne[0]);
    }
  }

  void rms_norm(const TensorView& x, const TensorView& w, float eps, const TensorView& out) override {
    rms_norm_for(x, w, eps, out, {});
  }
  void rms_norm_for(const TensorView& x, const TensorView& w, float eps, const TensorView& out,
                    std::span<const TensorView> next) override {
    norm_rows(x, nullptr, w, eps, out, next);
  }
  void add_rms_norm(const TensorView& x, const TensorView& d, const TensorView& w, float eps,
                    const TensorView& out) override {
    add_rms_norm_for(x, d, w, eps, out, {});
  }
  void add_rms_norm_for(const TensorView& x, const TensorView& d, const TensorView& w, float eps, const TensorView& out,
                        std::span<const TensorView> next) override {
    check_same_shape("add_rms_norm", x, d);
    norm_rows(x, &d, w, eps, out, next);
  }

  void matmul(const TensorView& w, const TensorView& x, const TensorView& y) override {
    matmul_group(std::span(&w, 1), x, std::span(&y, 1));
  }

  void matmul_group(std::span<const TensorView> ws, const TensorView& x, std::span<const TensorView> ys) override {
    TERN_CHECK(ws.size() == ys.size() && ws.size() <= kMaxGroup, "matmul_group: {} weights, {} outputs", ws.size(),
               ys.size());
    int64_t n_rows = 0;
    for (size_t i = 0; i < ws.size(); ++i) {
      check_matmul(ws[i], x, ys[i]);
      n_rows += ws[i].ne[1];
    }
    if (exact_) {
      for (size_t i = 0; i < ws.size(); ++i) matmul_exact(ws[i], x, ys[i]);
      return;
    }
    // Quantise the input once per distinct dot type, then split all weights' rows over the threads
    // as one job; every row meets every token with the ISA variant's dot product (ggml's arithmetic).
    const int64_t n_in = x.ne[0], n_tok = x.ne[1];
    const uint8_t* xq[kMaxGroup];
    size_t a_bytes[kMaxGroup];
    for (size_t i = 0; i < ws.size(); ++i) {
      const DType at = quant::vec_dot_type(ws[i].dtype);
      a_bytes[i] = row_bytes(at, n_in);
      TERN_CHECK(kernels_.vec_dot[static_cast<size_t>(ws[i].dtype)], "matmul: {} is not a weight type",
                 dtype_name(ws[i].dtype));
      // The plain types' many-pair kernels read the rounded activations widened back to f32
      // (exactly), here once per matmul rather than in each call (a decode's every piece).
      auto widened = [&](DType w) { return at != DType::F32 && kernels_.gemm_rows[static_cast<size_t>(w)]; };
      const bool widen = widened(ws[i].dtype);
      size_t same = 0;
      while (same < i && (quant::vec_dot_type(ws[same].dtype) != at || widened(ws[same].dtype) != widen)) ++same;
      if (same < i) {
        xq[i] = xq[same], a_bytes[i] = a_bytes[same];
        continue;
      }
      if (i == 0 && !widen && rounded_ == Rounded{x.data, n_in, n_tok, x.nb[1], at}) {
        xq[0] = x_quantized_[0].data();  // the norm before rounded x (norm_rows)
        continue;
      }
      uint8_t* buf = scratch(x_quantized_[i], a_bytes[i] * static_cast<size_t>(n_tok));
      xq[i] = buf;
      const size_t ab = a_bytes[i];
      float* wide = widen ? scratch(x_widened_[i], static_cast<size_t>(n_in * n_tok)) : nullptr;
      pool_.parallel_for(n_tok, [&](int64_t a, int64_t b) {
        for (int64_t t = a; t < b; ++t) {
          round_activations(at, static_cast<const float*>(x.row(t)), buf + t * ab, n_in);
          if (wide) quant::dequantize_row(at, buf + t * ab, wide + t * n_in, n_in);
        }
      });
      if (wide) xq[i] = reinterpret_cast<const uint8_t*>(wide), a_bytes[i] = static_cast<size_t>(n_in) * sizeof(float);
    }
    rounded_ = {};  // x may be written next: rounded again by the next norm_rows only
    // Prefill through the panel GEMM: its activation tables once per weight type.
    const float* prep[kMaxGroup] = {};
    for (size_t i = 0; i < ws.size() && n_tok >= 4; ++i) {
      const auto slot = static_cast<size_t>(ws[i].dtype);
      if (!kernels_.gemm_panel[slot]) continue;
      size_t same = 0;
      while (same < i && ws[same].dtype != ws[i].dtype) ++same;
      if (same < i) {
        prep[i] = prep[same];
        continue;
      }
      const int64_t per_tok = n_in / traits(ws[i].dtype).block_elems * kernels_.gemm_prep_per_block[slot];
      float* buf = scratch(panel_prep_[i], static_cast<size_t>(per_tok * n_tok));
      prep[i] = buf;
      const uint8_t* a = xq[i];
      const size_t ab = a_bytes[i];
      pool_.parallel_for(n_tok, [&](int64_t t0, int64_t t1) {
        kernels_.gemm_prepare[slot](a + t0 * ab, ab, t1 - t0, n_in, buf + t0 * per_tok);
      });
    }
    // Whole groups of eight rows per thread where every weight allows it (repacked weights).
    int64_t grain = 8;
    for (const TensorView& w : ws) grain = w.ne[1] % 8 == 0 ? grain : 1;
    auto rows = [&](int64_t a, int64_t b) {
      int64_t base = 0;
      for (size_t i = 0; i < ws.size(); base += ws[i].ne[1], ++i) {
        const int64_t j0 = std::max(a, base) - base, j1 = std::min(b, base + ws[i].ne[1]) - base;
        if (j0 < j1) matmul_rows(ws[i], ys[i], j0, j1, xq[i], a_bytes[i], prep[i], n_tok);
      }
    };
    // A decode-sized matmul streams its weights, and a fixed split leaves the bus half idle while
    // the slower thread finishes: where each thread's share is large, its rows go in pieces that a
    // thread done early takes over (for small ones the pieces' overhead measured more than the
    // tail they save).
    size_t bytes = 0;
    for (const TensorView& w : ws) bytes += w.row_size() * static_cast<size_t>(w.ne[1]);
    if (n_tok <= kStreamingTokens && bytes >= kStealingBytesPerThread * static_cast<size_t>(pool_.size()))
      pool_.parallel_for_stealing(n_rows, grain * kPieceGroups, rows);
    else
      pool_.parallel_for_grain(n_rows, grain, rows);
  }

  void rope(const TensorView& x, const int32_t* pos, const RopeParams& p) override { rope_qk(x, TensorView{}, pos, p); }

  // The reference's arithmetic (ref::rope), with each token's cos/sin computed once for all heads
  // of q and of k (k.data null: q only).
  void rope_qk(const TensorView& q, const TensorView& k, const int32_t* pos, const RopeParams& p) override {
    rounded_ = {};
    check_rope(q, p);
    if (k.data) {
      check_rope(k, p);
      TERN_CHECK(k.ne[0] == q.ne[0] && k.ne[2] == q.ne[2], "rope: k [{}, {}, {}] does not match q [{}, {}, {}]", k.ne[0],
                 k.ne[1], k.ne[2], q.ne[0], q.ne[1], q.ne[2]);
    }
    const int64_t half = p.n_rot / 2, T = q.ne[2];
    const float theta_scale = std::pow(p.theta_base, -2.0f / static_cast<float>(p.n_rot));
    // Every layer of a pass rotates the same positions: their cos/sin are computed by the first
    // and kept for the rest.
    const bool cached = rope_theta_scale_ == theta_scale && rope_half_ == half &&
                        std::equal(pos, pos + T, rope_pos_.begin(), rope_pos_.end());
    if (!cached) {
      rope_theta_scale_ = theta_scale, rope_half_ = half;
      rope_pos_.assign(pos, pos + T);
      rope_cs_.resize(static_cast<size_t>(T * 2 * half));
    }
    const bool neox = p.layout == RopeLayout::NeoX;
    pool_.parallel_for(T, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float* cs = &rope_cs_[static_cast<size_t>(t * 2 * half)];
        if (!cached) {
          float theta = static_cast<float>(pos[t]);
          for (int64_t i = 0; i < half; ++i, theta *= theta_scale) {
            cs[i] = std::cos(theta);
            cs[half + i] = std::sin(theta);
          }
        }
        for (const TensorView* x : {&q, &k})
          if (x->data)
            kernels_.rope_rotate(static_cast<float*>(x->row(0, t)), x->ne[1],
                                 static_cast<int64_t>(x->nb[1] / sizeof(float)), cs, cs + half, half, neox);
      }
    });
  }

  void kv_store(const TensorView& src, const TensorView& cache, const int32_t* slots) override {
    rounded_ = {};
    if (cache.dtype != DType::F16) return ref::kv_store(src, cache, slots);
    check_kv_store(src, cache);
    for (int64_t t = 0; t < src.ne[2]; ++t)
      TERN_CHECK(slots[t] >= 0 && slots[t] < cache.ne[2], "kv_store: slot {} outside the cache", slots[t]);
    pool_.parallel_for(src.ne[2], [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t h = 0; h < src.ne[1]; ++h)
          kernels_.f32_to_f16(static_cast<const float*>(src.row(h, t)), static_cast<uint16_t*>(cache.row(h, slots[t])),
                              src.ne[0]);
    });
  }

  void attention(const AttentionArgs& a) override {
    rounded_ = {};
    attention_.run(a, kernels_, pool_, exact_);
  }

  void swiglu(const TensorView& g, const TensorView& u, const TensorView& o) override { swiglu_for(g, u, o, {}); }
  void swiglu_for(const TensorView& g, const TensorView& u, const TensorView& o, std::span<const TensorView> next) override {
    rounded_ = {};
    check_same_shape("swiglu", g, u);
    check_same_shape("swiglu", g, o);
    // Rows in column pieces where there are fewer rows than threads (a decode step's one row, 5632
    // wide on the 1.1B shape: its exponentials are most of the op, and the other threads would wait).
    // Pieces rounded for `next` (see norm_rows) start on whole blocks of the activation type.
    const int64_t rows = g.nrows(), n = g.ne[0];
    if (rows == 0) return;
    const DType at = rounding_for(next, n);
    const int64_t unit = at == DType::F32 ? 64 : std::max<int64_t>(64, traits(at).block_elems);
    const int64_t pieces = std::max<int64_t>(1, (pool_.size() + rows - 1) / rows);
    const int64_t width = ((n + pieces - 1) / pieces + unit - 1) / unit * unit;
    const size_t ab = at == DType::F32 ? 0 : row_bytes(at, n);
    uint8_t* buf = ab ? scratch(x_quantized_[0], ab * static_cast<size_t>(rows)) : nullptr;
    pool_.parallel_for(rows * pieces, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t r = i / pieces, c0 = i % pieces * width, c1 = std::min(n, c0 + width);
        if (c0 >= c1) continue;
        float* out = static_cast<float*>(o.row(r)) + c0;
        kernels_.swiglu(static_cast<const float*>(g.row(r)) + c0, static_cast<const float*>(u.row(r)) + c0, out, c1 - c0);
        if (buf) round_activations(at, out, buf + r * ab + row_bytes(at, c0), c1 - c0);
      }
    });
    if (buf) rounded_ = {o.data, n, rows, o.nb[1], at};
  }

  void add(const TensorView& a, const TensorView& b, const TensorView& o) override {
    rounded_ = {};
    ref::add(a, b, o);
  }
  std::unique_ptr<Buffer> alloc(size_t bytes) override {  // (a new buffer may reuse a freed address)
    rounded_ = {};
    return Backend::alloc(bytes);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    rounded_ = {};
    Backend::copy(dst, src, bytes);
  }
  void to_backend(void* dst, const void* src, size_t bytes) override {
    rounded_ = {};
    Backend::to_backend(dst, src, bytes);
  }

 private:
  // out = rms_norm(x (+= *d first, if d), w) row by row, each row's add and norm back to back while
  // it is in L1 (a prefill's rows are 8 KB and more each: two ops would stream the whole batch
  // through the caches twice). With `next` (rms_norm_for), each row is also rounded there for those
  // weights' dot products, into the buffer matmul_group's first weight rounds into, when they all
  // take the same 8-bit activation type; rounded_ then tells matmul_group so, until any other op.
  void norm_rows(const TensorView& x, const TensorView* d, const TensorView& w, float eps, const TensorView& out,
                 std::span<const TensorView> next) {
    check_rms_norm(x, w, out);
    rounded_ = {};
    const int64_t n = x.ne[0], n_tok = x.ne[1];
    const DType at = rounding_for(next, n);
    const size_t ab = at == DType::F32 ? 0 : row_bytes(at, n);
    uint8_t* buf = ab ? scratch(x_quantized_[0], ab * static_cast<size_t>(n_tok)) : nullptr;
    pool_.parallel_for(n_tok, [&](int64_t a, int64_t b) {
      for (int64_t r = a; r < b; ++r) {
        const TensorView xr = slice(x, 1, r, r + 1), outr = slice(out, 1, r, r + 1);
        if (d) ref::add(xr, slice(*d, 1, r, r + 1), xr);
        ref::rms_norm(xr, w, eps, outr);
        if (buf) round_activations(at, static_cast<const float*>(outr.data), buf + r * ab, n);
      }
    });
    if (buf) rounded_ = {out.data, n, n_tok, out.nb[1], at};
  }

  // The 8-bit activation type all of `next` take (n inputs each), or F32 where the op producing
  // their input has no rounding to offer them: none given, exact mode, mixed types, or plain
  // weights (their activations are widened, see matmul_group).
  DType rounding_for(std::span<const TensorView> next, int64_t n) const {
    if (exact_ || next.empty() || next.size() > kMaxGroup) return DType::F32;
    const DType at = quant::vec_dot_type(next[0].dtype);
    for (const TensorView& wn : next)
      if (quant::vec_dot_type(wn.dtype) != at || kernels_.gemm_rows[static_cast<size_t>(wn.dtype)] ||
          !kernels_.vec_dot[static_cast<size_t>(wn.dtype)] || wn.ne[0] != n)
        return DType::F32;
    return at == DType::F32 || n % traits(at).block_elems != 0 ? DType::F32 : at;
  }
  // x[0, n) rounded to activation type at (whole blocks) into out, as matmul_group rounds them.
  void round_activations(DType at, const float* x, uint8_t* out, int64_t n) const {
    if (const cpu::QuantizeActFn q = kernels_.quantize_act[static_cast<size_t>(at)]) q(x, out, n);
    else quant::quantize_activation_row(at, x, out, n);
  }

  // Rows [j0, j1) of y = W x with x already quantised (rows of a_bytes). Prefill works in blocks of
  // kRowBlock weight rows against groups of four tokens: the four activation rows stay in L1 while
  // the block's rows pass over them, and each weight block is unpacked once per four tokens.
  // prep: the panel GEMM's activation tables (gemm_prepare) when the panel path is taken, else null.
  void matmul_rows(const TensorView& w, const TensorView& y, int64_t j0, int64_t j1, const uint8_t* xq,
                   size_t a_bytes, const float* prep, int64_t n_tok) const {
    if (w.layout != 0) return matmul_rows_x8(w, y, j0, j1, xq, a_bytes, prep, n_tok);
    constexpr int64_t kRowBlock = 16;
    const auto slot = static_cast<size_t>(w.dtype);
    const cpu::VecDotFn dot = kernels_.vec_dot[slot];
    const cpu::VecDotRows4Fn rows4 = kernels_.vec_dot_rows4[slot];
    const cpu::VecDotRows1Fn rows1 = kernels_.vec_dot_rows1[slot];
    const int64_t n_in = w.ne[0];
    if (const cpu::GemmRowsFn gemm = kernels_.gemm_rows[slot]) {
      // xq: f32 rows here (matmul_group widens them for these types).
      gemm(w.row(j0), w.nb[1], j1 - j0, reinterpret_cast<const float*>(xq), a_bytes / sizeof(float), n_tok, n_in,
           static_cast<float*>(y.row(0)) + j0, y.nb[1] / sizeof(float));
      return;
    }
    if (prep) {
      const size_t y_stride = y.nb[1] / sizeof(float);
      for (int64_t jb = j0; jb < j1; jb += cpu::kPanelRows)
        kernels_.gemm_panel[slot](w.row(jb), w.nb[1], std::min(j1 - jb, cpu::kPanelRows), xq, a_bytes, prep, n_tok,
                                  n_in, static_cast<float*>(y.row(0)) + jb, y_stride);
      return;
    }
    const int64_t t4 = rows4 ? n_tok / 4 * 4 : 0;
    // Several tokens: each block of rows meets them all while it is in cache (tokens beyond the
    // last four one by one), so the weights stream from memory once per matmul, not once per token.
    const int64_t t_block = n_tok > 1 && rows1 ? n_tok : t4;
    for (int64_t jb = j0; jb < j1 && t_block > 0; jb += kRowBlock) {
      const int64_t je = std::min(j1, jb + kRowBlock);
      for (int64_t t = 0; t < t4; t += 4) {
        float r[kRowBlock * 4];
        rows4(w.row(jb), w.nb[1], je - jb, xq + t * a_bytes, a_bytes, n_in, r);
        for (int64_t j = jb; j < je; ++j)
          for (int u = 0; u < 4; ++u) static_cast<float*>(y.row(t + u))[j] = r[(j - jb) * 4 + u];
      }
      for (int64_t t = t4; t < t_block; ++t)
        rows1(w.row(jb), w.nb[1], je - jb, xq + t * a_bytes, a_bytes, n_in, static_cast<float*>(y.row(t)) + jb);
    }
    // A single token (decode): the whole row range in one call, straight into y (its columns are
    // contiguous), so each activation block is prepared once per matmul, not once per row block.
    for (int64_t t = t_block; t < n_tok; ++t) {
      float* yt = static_cast<float*>(y.row(t));
      if (rows1) rows1(w.row(j0), w.nb[1], j1 - j0, xq + t * a_bytes, a_bytes, n_in, yt + j0);
      else
        for (int64_t j = j0; j < j1; ++j) yt[j] = dot(w.row(j), xq + t * a_bytes, n_in);
    }
  }

  // A layout of groups of eight rows: how to make it, undo it, and run decode on it.
  struct Grouped {
    uint8_t layout;
    DType type;
    int64_t block_elems, block_bytes;  // per block of the group (eight rows)
    void (*repack)(const uint8_t*, size_t, int64_t, int64_t, uint8_t*);
    void (*unpack)(const uint8_t*, int64_t, uint8_t*, size_t);
    cpu::GemvX8Fn cpu::Kernels::*gemv;
    cpu::GemmX8Fn cpu::Kernels::*gemm;
    size_t group_bytes(int64_t n) const { return static_cast<size_t>(n / block_elems * block_bytes); }
  };
  static constexpr Grouped kGrouped[] = {
      {cpu::kLayoutQ4_0x8, DType::Q4_0, 32, cpu::kQ4_0x8Block, cpu::repack_q4_0_x8, cpu::unpack_q4_0_x8,
       &cpu::Kernels::gemv_q4_0_x8, &cpu::Kernels::gemm_q4_0_x8},
      {cpu::kLayoutQ4_Kx8, DType::Q4_K, 256, cpu::kQ4_Kx8Block, cpu::repack_q4_k_x8, cpu::unpack_q4_k_x8,
       &cpu::Kernels::gemv_q4_k_x8, &cpu::Kernels::gemm_q4_k_x8},
      {cpu::kLayoutQ8_0x8, DType::Q8_0, 32, cpu::kQ8_0x8Block, cpu::repack_q8_0_x8, cpu::unpack_q8_0_x8,
       &cpu::Kernels::gemv_q8_0_x8, &cpu::Kernels::gemm_q8_0_x8},
      {cpu::kLayoutQ4_1x8, DType::Q4_1, 32, cpu::kQ4_1x8Block, cpu::repack_q4_1_x8, cpu::unpack_q4_1_x8,
       &cpu::Kernels::gemv_q4_1_x8, &cpu::Kernels::gemm_q4_1_x8},
      {cpu::kLayoutQ2_Kx8, DType::Q2_K, 256, cpu::kQ2_Kx8Block, cpu::repack_q2_k_x8, cpu::unpack_q2_k_x8,
       &cpu::Kernels::gemv_q2_k_x8, &cpu::Kernels::gemm_q2_k_x8},
      {cpu::kLayoutQ3_Kx8, DType::Q3_K, 256, cpu::kQ3_Kx8Block, cpu::repack_q3_k_x8, cpu::unpack_q3_k_x8,
       &cpu::Kernels::gemv_q3_k_x8, &cpu::Kernels::gemm_q3_k_x8},
      {cpu::kLayoutQ5_Kx8, DType::Q5_K, 256, cpu::kQ5_Kx8Block, cpu::repack_q5_k_x8, cpu::unpack_q5_k_x8,
       &cpu::Kernels::gemv_q5_k_x8, &cpu::Kernels::gemm_q5_k_x8},
      {cpu::kLayoutQ6_Kx8, DType::Q6_K, 256, cpu::kQ6_Kx8Block, cpu::repack_q6_k_x8, cpu::unpack_q6_k_x8,
       &cpu::Kernels::gemv_q6_k_x8, &cpu::Kernels::gemm_q6_k_x8},
  };
  static const Grouped* grouped_for(DType t) {
    for (const Grouped& g : kGrouped)
      if (g.type == t) return &g;
    return nullptr;
  }
  static const Grouped& grouped_layout(uint8_t layout) {
    for (const Grouped& g : kGrouped)
      if (g.layout == layout) return g;
    fail("cpu backend: unknown weight layout {}", layout);
  }

  // Rows [j0, j1) of a weight repacked in groups of eight. Whole groups go through the grouped
  // kernels (the GEMM for two tokens or more); a partial group is unpacked back to row-major blocks
  // in a scratch tile for the row-major kernels.
  void matmul_rows_x8(const TensorView& w, const TensorView& y, int64_t j0, int64_t j1, const uint8_t* xq,
                      size_t a_bytes, const float* prep, int64_t n_tok) const {
    const Grouped& gl = grouped_layout(w.layout);
    const int64_t n_in = w.ne[0];
    const size_t group_bytes = gl.group_bytes(n_in);
    const auto* base = static_cast<const uint8_t*>(w.data);
    thread_local std::vector<uint8_t> tile;
    const size_t y_stride = y.nb[1] / sizeof(float);
    for (int64_t g = j0 / 8; g * 8 < j1; ++g) {
      const int64_t r0 = std::max(j0, g * 8), r1 = std::min(j1, g * 8 + 8);
      if (r0 == g * 8 && r1 == g * 8 + 8) {
        // A run of whole groups: one call, straight into y.
        int64_t ge = g + 1;
        while ((ge + 1) * 8 <= j1) ++ge;
        const uint8_t* wg = base + g * group_bytes;
        float* y0 = static_cast<float*>(y.row(0)) + g * 8;
        if (n_tok >= 2) {  // several tokens: the GEMM reads each weight block once for all of them
          (kernels_.*gl.gemm)(wg, group_bytes, ge - g, xq, a_bytes, n_tok, n_in, y0, y_stride);
        } else {
          for (int64_t t = 0; t < n_tok; ++t)
            (kernels_.*gl.gemv)(wg, group_bytes, ge - g, xq + t * a_bytes, n_in, y0 + t * y_stride);
        }
        g = ge - 1;
        continue;
      }
      tile.resize(w.row_size() * 8);
      gl.unpack(base + g * group_bytes, n_in, tile.data(), w.row_size());
      TensorView rows = w;
      rows.data = tile.data();
      rows.layout = 0;
      rows.ne[1] = 8;
      rows.nb[1] = w.row_size();
      matmul_rows(rows, shifted_columns(y, g * 8), r0 - g * 8, r1 - g * 8, xq, a_bytes, prep, n_tok);
    }
  }

  // y's columns from `first` on (a view whose column 0 is y's column `first`).
  static TensorView shifted_columns(const TensorView& y, int64_t first) {
    TensorView v = y;
    v.data = static_cast<float*>(y.data) + first;
    v.ne[0] = y.ne[0] - first;
    return v;
  }

  // f32 activations against dequantised weight rows (exact mode).
  void matmul_exact(const TensorView& w, const TensorView& x, const TensorView& y) {
    const int64_t n_in = x.ne[0];
    pool_.parallel_for(w.ne[1], [&](int64_t a, int64_t b) {
      thread_local std::vector<float> w_row;
      float* wr = scratch(w_row, static_cast<size_t>(n_in));
      for (int64_t j = a; j < b; ++j) {
        quant::dequantize_row(w.dtype, w.row(j), wr, n_in);
        for (int64_t t = 0; t < x.ne[1]; ++t)
          static_cast<float*>(y.row(t))[j] = kernels_.dot_f32(wr, static_cast<const float*>(x.row(t)), n_in);
      }
    });
  }

  static constexpr size_t kMaxGroup = 4;
  // Up to this many tokens a matmul's time is its weights' streaming (decode, or verifying a few
  // drafted tokens), in pieces of this many groups of eight rows (an even number, for the 512-bit
  // kernels' pairs of groups; 36 KiB of 2048-wide Q4_0 rows).
  static constexpr int64_t kStreamingTokens = 8;
  static constexpr int64_t kPieceGroups = 8;
  static constexpr size_t kStealingBytesPerThread = size_t{1} << 20;

  ThreadPool pool_;
  bool exact_;
  cpu::Isa isa_;
  const cpu::Kernels& kernels_;
  cpu::FlashAttention attention_;
  std::vector<uint8_t> x_quantized_[kMaxGroup];
  // What x_quantized_[0] holds when the last op was a norm that rounded its output (norm_rows).
  struct Rounded {
    const void* src = nullptr;
    int64_t n = 0, n_tok = 0;
    size_t row_stride = 0;
    DType at = DType::F32;
    bool operator==(const Rounded&) const = default;
  };
  Rounded rounded_;
  std::vector<float> x_widened_[kMaxGroup];  // F16/BF16 activations widened for gemm_rows
  std::vector<float> panel_prep_[kMaxGroup];
  cpu::WeightArena prepared_;  // repacked weights
  // rope_qk's cos/sin: per token of rope_pos_, half cos then half sin, for that theta scale.
  std::vector<int32_t> rope_pos_;
  std::vector<float> rope_cs_;
  float rope_theta_scale_ = 0;
  int64_t rope_half_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendConfig& config) {
  return std::make_unique<CpuBackend>(config);
}

}  // namespace tern
