#include "backends/cpu/attention.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/fp16.h"

namespace tern::cpu {
namespace {

constexpr int64_t kTileTokens = 16;    // query tokens per tile (prefill)
constexpr int64_t kChunk = 32;         // key positions scored before one softmax update
constexpr int64_t kSplitLen = 256;     // a decode token's context is split every this many positions
constexpr int64_t kMaxSplits = 32;


// Per-thread working set of one work item: its query rows and their softmax state.
struct Rows {
  std::vector<double> q;
  std::vector<float> acc, scores, kchunk, vchunk;
  std::vector<float> m, l;
  std::vector<int32_t> pos;
  int64_t n = 0;
};

}  // namespace

// One work item: the query rows of (tile, kv head) against KV positions [p0, p1).
struct FlashAttention::Item {
  const AttentionArgs& a;
  const Kernels& k;
  const Tile& tile;
  int64_t kvh, p0, p1, d, group;
  const KvSeq& seq;

  const float* cache_row(const TensorView& c, int64_t p, float* buf) const {
    const void* r = c.row(kvh, kv_slot(seq, a.block_size, p));
    if (c.dtype == DType::F32) return static_cast<const float*>(r);
    k.f16_to_f32(static_cast<const uint16_t*>(r), buf, d);
    return buf;
  }

  void load_queries(Rows& r, bool round_q) const {
    r.n = 0;
    for (int64_t t = tile.t0; t < tile.t1; ++t)
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h, ++r.n) {
        const float* src = static_cast<const float*>(a.q.row(h, t));
        double* q = &r.q[static_cast<size_t>(r.n * d)];
        if (round_q) k.round_f16(src, q, d);
        else std::copy(src, src + d, q);
        std::fill(&r.acc[static_cast<size_t>(r.n * d)], &r.acc[static_cast<size_t>((r.n + 1) * d)], 0.0f);
        r.m[r.n] = -INFINITY;
        r.l[r.n] = 0.0f;
        r.pos[r.n] = a.token_pos[t];
      }
  }

  // scores[row][p - c0] for positions [c0, c1); causally masked ones are -inf.
  void score(Rows& r, int64_t c0, int64_t c1) const {
    for (int64_t p = c0; p < c1; ++p) {
      float* dst = &r.kchunk[static_cast<size_t>((p - c0) * d)];
      const float* kr = cache_row(a.k, p, dst);
      if (kr != dst) std::copy(kr, kr + d, dst);
    }
    k.scores(r.q.data(), r.n, r.kchunk.data(), c1 - c0, d, a.scale, r.scores.data(), kChunk);
    for (int64_t i = 0; i < r.n; ++i)
      for (int64_t p = std::max(c0, int64_t{r.pos[i]} + 1); p < c1; ++p) r.scores[i * kChunk + (p - c0)] = -INFINITY;
  }

  // scores -> weights * V into acc, positions [c0, c1).
  void accumulate(Rows& r, int64_t c0, int64_t c1) const {
    for (int64_t p = c0; p < c1; ++p) {
      float* dst = &r.vchunk[static_cast<size_t>((p - c0) * d)];
      const float* vr = cache_row(a.v, p, dst);
      if (vr != dst) std::copy(vr, vr + d, dst);
    }
    k.weighted_values(r.scores.data(), r.n, kChunk, r.vchunk.data(), c1 - c0, d, r.acc.data());
  }

  // Online softmax over [p0, p1): running max m and sum l; acc accumulates the (unnormalised)
  // weighted values and is rescaled whenever the max grows.
  void online(Rows& r) const {
    for (int64_t c0 = p0; c0 < p1; c0 += kChunk) {
      const int64_t c1 = std::min(p1, c0 + kChunk), n = c1 - c0;
      score(r, c0, c1);
      for (int64_t i = 0; i < r.n; ++i) {
        float* s = &r.scores[i * kChunk];
        float mx = r.m[i];
        for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
        if (mx == -INFINITY) continue;  // nothing visible yet
        const float corr = std::exp(r.m[i] - mx);
        float l = r.l[i] * corr;
        if (corr != 1.0f)
          for (float *acc = &r.acc[static_cast<size_t>(i * d)], *e = acc + d; acc < e; ++acc) *acc *= corr;
        l += k.exp_sub_sum(s, n, mx);
        r.m[i] = mx;
        r.l[i] = l;
      }
      accumulate(r, c0, c1);
    }
  }
};

void FlashAttention::run(const AttentionArgs& a, const Kernels& k, ThreadPool& pool, bool exact) {
  check_attention(a);
  TERN_CHECK(a.k.dtype == a.v.dtype && (a.k.dtype == DType::F16 || a.k.dtype == DType::F32),
             "attention: cache type {} unsupported", dtype_name(a.k.dtype));
  const int64_t T = a.q.ne[2], d = a.q.ne[0], n_kv_head = a.k.ne[1], group = a.q.ne[1] / n_kv_head;
  // The peer's rounding: q meets an f16 key as f16 (products then exact, scores exact in double).
  const bool round_q = !exact && a.k.dtype == DType::F16;

  // Tiles of consecutive tokens of one sequence; a lone token's long context is split across
  // work items whose partial softmaxes are merged exactly.
  tiles_.clear();
  first_item_.clear();
  int64_t n_items = 0;
  for (int64_t t = 0; t < T;) {
    int64_t e = t + 1;
    while (e < T && e - t < kTileTokens && a.token_seq[e] == a.token_seq[t]) ++e;
    int64_t n_kv = 0;
    for (int64_t i = t; i < e; ++i) {
      const KvSeq& s = a.seqs[a.token_seq[i]];
      TERN_CHECK(a.token_pos[i] >= 0 && a.token_pos[i] < static_cast<int64_t>(s.n_blocks) * a.block_size,
                 "attention: position {} beyond the sequence's {} blocks", a.token_pos[i], s.n_blocks);
      n_kv = std::max<int64_t>(n_kv, a.token_pos[i] + 1);
    }
    // The split depends on the context length only, never on the thread count or the rest of the
    // batch, so a token's result is the same however it is run.
    const int32_t splits = e - t == 1 ? static_cast<int32_t>(std::clamp<int64_t>(n_kv / kSplitLen, 1, kMaxSplits)) : 1;
    tiles_.push_back({t, e, n_kv, splits});
    first_item_.push_back(n_items);
    n_items += n_kv_head * splits;
    t = e;
  }
  const int64_t rows_max = kTileTokens * group, stride = d + 2;
  // Per split item and row: m, l, then acc[d].
  partial_.resize(static_cast<size_t>(n_items * rows_max * stride));
  auto part = [&](int64_t item, int64_t row) { return &partial_[static_cast<size_t>((item * rows_max + row) * stride)]; };

  auto item_at = [&](int64_t item) {
    const size_t ti = static_cast<size_t>(
        std::upper_bound(first_item_.begin(), first_item_.end(), item) - first_item_.begin() - 1);
    const Tile& tile = tiles_[ti];
    const int64_t local = item - first_item_[ti];
    const int64_t kvh = local / tile.n_splits, split = local % tile.n_splits;
    const int64_t span = (tile.n_kv + tile.n_splits - 1) / tile.n_splits;
    const int64_t p0 = std::min(tile.n_kv, split * span), p1 = std::min(tile.n_kv, p0 + span);
    return Item{a, k, tile, kvh, p0, p1, d, group, a.seqs[a.token_seq[tile.t0]]};
  };
  auto rows_scratch = [&]() -> Rows& {
    thread_local Rows r;
    r.q.resize(static_cast<size_t>(rows_max * d));
    r.acc.resize(static_cast<size_t>(rows_max * d));
    r.scores.resize(static_cast<size_t>(rows_max * kChunk));
    r.kchunk.resize(static_cast<size_t>(kChunk * d));
    r.vchunk.resize(static_cast<size_t>(kChunk * d));
    r.m.resize(static_cast<size_t>(rows_max));
    r.l.resize(static_cast<size_t>(rows_max));
    r.pos.resize(static_cast<size_t>(rows_max));
    return r;
  };
  // Writes a finished item's rows, normalised, to the output.
  auto store = [&](const Item& it, const Rows& r) {
    int64_t i = 0;
    for (int64_t t = it.tile.t0; t < it.tile.t1; ++t)
      for (int64_t h = it.kvh * group; h < (it.kvh + 1) * group; ++h, ++i) {
        float* o = static_cast<float*>(a.out.row(h, t));
        const float* acc = &r.acc[static_cast<size_t>(i * d)];
        const float inv = r.l[i] > 0 ? 1.0f / r.l[i] : 0.0f;
        for (int64_t j = 0; j < d; ++j) o[j] = acc[j] * inv;
      }
  };
  // Leaves a split item's running max, sum and unnormalised values for the merge.
  auto save = [&](int64_t item, const Rows& r) {
    for (int64_t i = 0; i < r.n; ++i) {
      float* p = part(item, i);
      p[0] = r.m[i];
      p[1] = r.l[i];
      std::copy(&r.acc[static_cast<size_t>(i * d)], &r.acc[static_cast<size_t>((i + 1) * d)], p + 2);
    }
  };

  // One pass: online softmax with values; split items leave (m, l, acc) to merge below.
  pool.parallel_for_dynamic(n_items, [&](int64_t i0, int64_t i1) {
    Rows& r = rows_scratch();
    for (int64_t k = i0; k < i1; ++k) {
      const int64_t item = n_items - 1 - k;  // later (causally longer) tiles first
      const Item it = item_at(item);
      it.load_queries(r, round_q);
      it.online(r);
      if (it.tile.n_splits == 1) store(it, r);
      else save(item, r);
    }
  });

  // Combine split items: rescale each partial to the common max, then normalise.
  for (size_t ti = 0; ti < tiles_.size(); ++ti) {
    const Tile& tile = tiles_[ti];
    if (tile.n_splits == 1) continue;
    for (int64_t kvh = 0; kvh < n_kv_head; ++kvh)
      for (int64_t g = 0; g < group; ++g) {
        const int64_t first = first_item_[ti] + kvh * tile.n_splits;
        float m = -INFINITY;
        for (int64_t s = 0; s < tile.n_splits; ++s) m = std::max(m, part(first + s, g)[0]);
        float* o = static_cast<float*>(a.out.row(kvh * group + g, tile.t0));
        std::fill(o, o + d, 0.0f);
        float l = 0;
        for (int64_t s = 0; s < tile.n_splits; ++s) {
          const float* p = part(first + s, g);
          if (p[0] == -INFINITY) continue;  // nothing visible in this split
          const float c = std::exp(p[0] - m);
          l += p[1] * c;
          for (int64_t i = 0; i < d; ++i) o[i] += p[2 + i] * c;
        }
        const float inv = l > 0 ? 1.0f / l : 0.0f;
        for (int64_t i = 0; i < d; ++i) o[i] *= inv;
      }
  }
}

}  // namespace tern::cpu
