// A device backend seen through host memory, so that the op tests drive every backend with the same
// host buffers: each op copies its host operands into fresh device buffers (guard bytes around
// each), stages the integer inputs, runs, copies the outputs back and checks that the device wrote
// nothing outside them. Operands already on the device (prepared weights) are passed through.
#pragma once

#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "core/error.h"
#include "ops/backend.h"

namespace tern::testing {

class HostAdapter final : public Backend {
 public:
  HostAdapter(std::unique_ptr<Backend> inner, std::string name) : inner_(std::move(inner)), name_(std::move(name)) {}
  std::string_view name() const override { return name_; }
  Device device() const override { return inner_->device(); }
  bool supports_weight(DType t) const override { return inner_->supports_weight(t); }
  TensorView prepare_weight(const TensorView& w) override { return inner_->prepare_weight(w); }

  void get_rows(const TensorView& table, const int32_t* ids, int64_t n, const TensorView& out) override {
    Call c(*inner_, n * 4);
    const TensorView t = c.in(table);
    const int32_t* d_ids = c.ints(ids, n);
    const TensorView o = c.out(out);
    inner_->get_rows(t, d_ids, n, o);
    c.finish();
  }
  void rms_norm(const TensorView& x, const TensorView& w, float eps, const TensorView& out) override {
    Call c(*inner_, 0);
    const TensorView dx = c.in(x), dw = c.in(w), o = c.out(out);
    inner_->rms_norm(dx, dw, eps, o);
    c.finish();
  }
  void matmul(const TensorView& w, const TensorView& x, const TensorView& y) override {
    Call c(*inner_, 0);
    const TensorView dw = c.in(w), dx = c.in(x), o = c.out(y);
    inner_->matmul(dw, dx, o);
    c.finish();
  }
  void matmul_group(std::span<const TensorView> w, const TensorView& x, std::span<const TensorView> y) override {
    Call c(*inner_, 0);
    std::vector<TensorView> dw, dy;
    for (const TensorView& t : w) dw.push_back(c.in(t));
    const TensorView dx = c.in(x);
    for (const TensorView& t : y) dy.push_back(c.out(t));
    inner_->matmul_group(dw, dx, dy);
    c.finish();
  }
  void matmul_swiglu(const TensorView& w_gate, const TensorView& w_up, const TensorView& x, const TensorView& gate,
                     const TensorView& up, std::span<const TensorView> next) override {
    Call c(*inner_, 0);
    const TensorView dg = c.in(w_gate), du = c.in(w_up), dx = c.in(x);
    std::vector<TensorView> dn;
    for (const TensorView& t : next) dn.push_back(c.in(t));
    const TensorView og = c.out(gate), ou = c.out(up);
    inner_->matmul_swiglu(dg, du, dx, og, ou, dn);
    c.finish();
  }
  void rope(const TensorView& x, const int32_t* pos, const RopeParams& p) override {
    Call c(*inner_, x.ne[2] * 4);
    const int32_t* d_pos = c.ints(pos, x.ne[2]);
    const TensorView o = c.out(x);
    inner_->rope(o, d_pos, p);
    c.finish();
  }
  void kv_store(const TensorView& src, const TensorView& cache, const int32_t* slots) override {
    Call c(*inner_, src.ne[2] * 4);
    const TensorView s = c.in(src);
    const int32_t* d_slots = c.ints(slots, src.ne[2]);
    const TensorView o = c.out(cache);
    inner_->kv_store(s, o, d_slots);
    c.finish();
  }
  void kv_store_kv(const TensorView& k, const TensorView& v, const TensorView& k_cache, const TensorView& v_cache,
                   const int32_t* slots) override {
    Call c(*inner_, k.ne[2] * 4);
    const TensorView dk = c.in(k), dv = c.in(v);
    const int32_t* d_slots = c.ints(slots, k.ne[2]);
    const TensorView ok = c.out(k_cache), ov = c.out(v_cache);
    inner_->kv_store_kv(dk, dv, ok, ov, d_slots);
    c.finish();
  }
  void rope_qk_store(const TensorView& q, const TensorView& k, const TensorView& v, const int32_t* pos,
                     const RopeParams& p, const TensorView& k_cache, const TensorView& v_cache,
                     const int32_t* slots) override {
    Call c(*inner_, 2 * q.ne[2] * 4 + 256);
    const int32_t* d_pos = c.ints(pos, q.ne[2]);
    const int32_t* d_slots = c.ints(slots, k.ne[2]);
    const TensorView dq = c.out(q), dk = c.out(k), dv = c.in(v);
    const TensorView ok = c.out(k_cache), ov = c.out(v_cache);
    inner_->rope_qk_store(dq, dk, dv, d_pos, p, ok, ov, d_slots);
    c.finish();
  }
  void attention(const AttentionArgs& a) override {
    const int64_t T = a.q.ne[2];
    int64_t n_seqs = 0, n_blocks = 0;
    for (int64_t t = 0; t < T; ++t) n_seqs = std::max<int64_t>(n_seqs, a.token_seq[t] + 1);
    for (int64_t s = 0; s < n_seqs; ++s) n_blocks += a.seqs[s].n_blocks;
    Call c(*inner_, (2 * T + n_blocks) * 4 + n_seqs * (sizeof(KvSeq) + 256) + n_seqs * 256);
    AttentionArgs d = a;
    std::vector<KvSeq> seqs(static_cast<size_t>(n_seqs));
    for (int64_t s = 0; s < n_seqs; ++s) seqs[s] = {c.ints(a.seqs[s].block_table, a.seqs[s].n_blocks), a.seqs[s].n_blocks};
    d.seqs = static_cast<const KvSeq*>(inner_->stage(seqs.data(), seqs.size() * sizeof(KvSeq)));
    d.token_seq = c.ints(a.token_seq, T);
    d.token_pos = c.ints(a.token_pos, T);
    d.q = c.in(a.q);
    d.k = c.in(a.k);
    d.v = c.in(a.v);
    d.out = c.out(a.out);
    inner_->attention(d);
    c.finish();
  }
  void top_k(const TensorView& logits, int k, float* values, int32_t* ids) override {
    Call c(*inner_, 0);
    const TensorView d = c.in(logits);
    inner_->top_k(d, k, values, ids);  // host outputs
    c.finish();
  }
  void swiglu(const TensorView& gate, const TensorView& up, const TensorView& out) override {
    Call c(*inner_, 0);
    const TensorView g = c.in(gate), u = c.in(up), o = c.out(out);
    inner_->swiglu(g, u, o);
    c.finish();
  }
  void add(const TensorView& a, const TensorView& b, const TensorView& out) override {
    Call c(*inner_, 0);
    const TensorView da = c.in(a), db = c.in(b), o = c.out(out);
    inner_->add(da, db, o);
    c.finish();
  }
  void add_rms_norm(const TensorView& x, const TensorView& d, const TensorView& w, float eps,
                    const TensorView& out) override {
    Call c(*inner_, 0);
    const TensorView dx = c.out(x), dd = c.in(d), dw = c.in(w), o = c.out(out);
    inner_->add_rms_norm(dx, dd, dw, eps, o);
    c.finish();
  }
  void rope_qk(const TensorView& q, const TensorView& k, const int32_t* pos, const RopeParams& p) override {
    Call c(*inner_, q.ne[2] * 4);
    const int32_t* d_pos = c.ints(pos, q.ne[2]);
    const TensorView dq = c.out(q), dk = c.out(k);
    inner_->rope_qk(dq, dk, d_pos, p);
    c.finish();
  }

 private:
  static constexpr size_t kGuard = 256;
  static constexpr uint8_t kGuardByte = 0xA5;

  // One op's device copies. A host pointer seen twice (in-place ops) maps to the same copy.
  class Call {
   public:
    Call(Backend& dev, int64_t int_bytes) : dev_(dev) { dev_.begin_pass(static_cast<size_t>(int_bytes) + 64 * 256); }

    TensorView in(const TensorView& h) {
      if (h.device != Device::CPU) return h;
      if (auto it = mapped_.find(h.data); it != mapped_.end()) return it->second.view;
      TERN_CHECK(h.layout != 0 || h.is_contiguous(), "host adapter: operands must be contiguous");
      const size_t bytes = h.row_size() * static_cast<size_t>(h.nrows());
      auto buf = dev_.alloc(bytes + 2 * kGuard);
      const std::vector<uint8_t> guard(kGuard, kGuardByte);
      auto* base = static_cast<uint8_t*>(buf->data());
      dev_.to_backend(base, guard.data(), kGuard);
      dev_.to_backend(base + kGuard + bytes, guard.data(), kGuard);
      dev_.to_backend(base + kGuard, h.data, bytes);
      TensorView d = h;
      d.data = base + kGuard;
      d.device = dev_.device();
      mapped_[h.data] = {std::move(buf), d, bytes};
      return d;
    }
    // An output: its current host contents (poison, or the input of an in-place op) go up too.
    TensorView out(const TensorView& h) {
      const TensorView d = in(h);
      outs_.push_back(h);
      return d;
    }
    const int32_t* ints(const int32_t* host, int64_t n) {
      return static_cast<const int32_t*>(dev_.stage(host, static_cast<size_t>(n) * 4));
    }
    void finish() {
      for (const TensorView& h : outs_) {
        const Mapped& m = mapped_.at(h.data);
        dev_.to_host(h.data, m.view.data, m.bytes);
      }
      for (const auto& [host, m] : mapped_) {
        std::vector<uint8_t> g(2 * kGuard);
        const auto* base = static_cast<const uint8_t*>(m.buf->data());
        dev_.to_host(g.data(), base, kGuard);
        dev_.to_host(g.data() + kGuard, base + kGuard + m.bytes, kGuard);
        for (uint8_t b : g) TERN_CHECK(b == kGuardByte, "host adapter: the device wrote outside an operand");
      }
    }

   private:
    struct Mapped {
      std::unique_ptr<Buffer> buf;
      TensorView view;
      size_t bytes = 0;
    };
    Backend& dev_;
    std::map<const void*, Mapped> mapped_;
    std::vector<TensorView> outs_;
  };

  std::unique_ptr<Backend> inner_;
  std::string name_;
};

}  // namespace tern::testing
