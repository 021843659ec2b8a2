#include "backends/cpu/attention.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/fp8.h"
#include "quant/quant.h"

namespace tern::cpu {
namespace {

constexpr int64_t kTileTokens = 16;  // query tokens per tile (prefill)
constexpr int64_t kChunk = 32;       // key positions scored before one softmax update
// Every token's context is cut into segments at fixed multiples of this many positions. Each
// segment gets its own online softmax and the segments are merged exactly, as FlashDecoding does;
// a decode token's segments run as separate work items. Because the cut depends on positions only,
// a token's result does not depend on its tile, its batch or the thread count: a prompt token run in
// a prefill chunk gives the same bits as the same token decoded alone (batch invariance).
constexpr int64_t kSegment = 256;
static_assert(kSegment % kChunk == 0);

// Per-thread working set of one work item: its query rows and their softmax state.
struct Rows {
  std::vector<double> q;
  std::vector<float> acc, scores, kchunk, vchunk;  // kchunk, vchunk: FP8/Q8_0 rows converted
  std::vector<float> m, l;
  std::vector<int32_t> pos;
  // The cache rows of the chunk being computed and of the next one (FlashAttention::Item::locate).
  struct Located {
    const void* k[kChunk];
    const void* v[kChunk];
  } chunks[2];
  std::vector<float> seg_partial;  // multi-segment tiles run in one item: per segment and row, m, l, acc[d]
  int64_t n = 0;
};

// Merges per-segment softmax states (m, l, unnormalised acc[d]) into one normalised row: every
// partial is rescaled to the common maximum, in segment order.
template <typename Part>
void merge_segments(int64_t n_segs, int64_t d, Part part, float* o) {
  float m = -INFINITY;
  for (int64_t s = 0; s < n_segs; ++s) m = std::max(m, part(s)[0]);
  std::fill(o, o + d, 0.0f);
  float l = 0;
  for (int64_t s = 0; s < n_segs; ++s) {
    const float* p = part(s);
    if (p[0] == -INFINITY) continue;  // nothing visible in this segment
    const float c = std::exp(p[0] - m);
    l += p[1] * c;
    for (int64_t i = 0; i < d; ++i) o[i] += p[2 + i] * c;
  }
  const float inv = l > 0 ? 1.0f / l : 0.0f;
  for (int64_t i = 0; i < d; ++i) o[i] *= inv;
}

// The largest of s[0..n) (-inf for none), in four independent chains: one chain of n dependent
// max operations cost more than the scores' multiply-adds at decode. Which element is largest
// does not depend on the order (NaN is skipped either way), so neither does the result.
float row_max(const float* s, int64_t n) {
  float m[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
  int64_t j = 0;
  for (; j + 4 <= n; j += 4)
    for (int u = 0; u < 4; ++u) m[u] = std::max(m[u], s[j + u]);
  for (; j < n; ++j) m[0] = std::max(m[0], s[j]);
  return std::max(std::max(m[0], m[1]), std::max(m[2], m[3]));
}

}  // namespace

// One work item: the query rows of (tile, kv head) against segments [s0, s1).
struct FlashAttention::Item {
  const AttentionArgs& a;
  const Kernels& k;
  const Tile& tile;
  int64_t kvh, s0, s1, d, group;
  const KvSeq& seq;

  // A chunk's n rows of cache c (K or V), located where they lie, for the kernels (KvRows): an F32
  // or F16 cache's as they are; FP8 and Q8_0 rows (per-block scales) converted to f32 into buf,
  // their addresses into converted.
  cpu::KvRows chunk_rows(const TensorView& c, const void* const* located, int64_t n, float* buf,
                         const void** converted) const {
    if (c.dtype == DType::F32 || c.dtype == DType::F16) return {located, c.dtype == DType::F16};
    for (int64_t j = 0; j < n; ++j) {
      float* dst = buf + j * d;
      if (c.dtype == DType::F8_E4M3)
        for (int64_t i = 0; i < d; ++i) dst[i] = fp8_e4m3_to_f32(static_cast<const uint8_t*>(located[j])[i]);
      else quant::dequantize_row(c.dtype, located[j], dst, d);
      converted[j] = dst;
    }
    return {converted, false};
  }

  void load_queries(Rows& r, bool round_q) const {
    r.n = 0;
    for (int64_t t = tile.t0; t < tile.t1; ++t)
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h, ++r.n) {
        const float* src = static_cast<const float*>(a.q.row(h, t));
        double* q = &r.q[static_cast<size_t>(r.n * d)];
        if (round_q) k.round_f16(src, q, d);
        else std::copy(src, src + d, q);
        r.pos[r.n] = a.token_pos[t];
      }
  }

  void reset(Rows& r) const {
    std::fill(r.acc.begin(), r.acc.begin() + r.n * d, 0.0f);
    std::fill(r.m.begin(), r.m.begin() + r.n, -INFINITY);
    std::fill(r.l.begin(), r.l.begin() + r.n, 0.0f);
  }

  // scores[row][j] for the n positions of a located chunk.
  void score(Rows& r, const Rows::Located& at, int64_t n) const {
    const void* converted[kChunk];
    k.scores(r.q.data(), r.n, chunk_rows(a.k, at.k, n, r.kchunk.data(), converted), n, d, a.scale, r.scores.data(),
             kChunk);
  }

  // scores -> weights * V into acc, for the same chunk.
  void accumulate(Rows& r, const Rows::Located& at, int64_t n) const {
    const void* converted[kChunk];
    k.weighted_values(r.scores.data(), r.n, kChunk, chunk_rows(a.v, at.v, n, r.vchunk.data(), converted), n, d,
                      r.acc.data());
  }

  // The K and V rows of positions [c0, c1) into `at` (each position's slot looked up once: the
  // kernels read the rows there), and asked for into L2. A row is one head's slice of a slot
  // (128 bytes at d = 64, f16), a slot's heads lie side by side and the slots of a block follow
  // each other: a stride the hardware prefetchers do not follow from one position to the next, and
  // a decode step at a 1k context spent most of its attention time waiting for these rows (SmolLM2:
  // a quarter of the bytes a token reads).
  void locate(int64_t c0, int64_t c1, Rows::Located& at) const {
    const size_t k_bytes = row_bytes(a.k.dtype, d), v_bytes = row_bytes(a.v.dtype, d);
    for (int64_t p = c0; p < c1; ++p) {
      const int64_t slot = kv_slot(seq, a.block_size, p);
      const auto* kr = static_cast<const char*>(at.k[p - c0] = a.k.row(kvh, slot));
      const auto* vr = static_cast<const char*>(at.v[p - c0] = a.v.row(kvh, slot));
      for (size_t o = 0; o < k_bytes; o += 64) __builtin_prefetch(kr + o, 0, 2);
      for (size_t o = 0; o < v_bytes; o += 64) __builtin_prefetch(vr + o, 0, 2);
    }
  }

  // Online softmax over positions [p0, p1): running max m and sum l; acc accumulates the
  // (unnormalised) weighted values and is rescaled whenever the max grows. Each row works on its
  // visible (causal) prefix of a chunk only, so its arithmetic is the same whatever the tile's
  // other rows see. The next chunk's rows are asked for while this one is computed.
  void online(Rows& r, int64_t p0, int64_t p1) const {
    Rows::Located *cur = &r.chunks[0], *next = &r.chunks[1];
    locate(p0, std::min(p1, p0 + kChunk), *cur);
    for (int64_t c0 = p0; c0 < p1; c0 += kChunk) {
      const int64_t c1 = std::min(p1, c0 + kChunk), n = c1 - c0;
      locate(c1, std::min(p1, c1 + kChunk), *next);
      score(r, *cur, n);
      for (int64_t i = 0; i < r.n; ++i) {
        float* s = &r.scores[i * kChunk];
        const int64_t n_vis = std::clamp<int64_t>(int64_t{r.pos[i]} + 1 - c0, 0, n);
        std::fill(s + n_vis, s + n, 0.0f);  // masked: zero weight
        if (n_vis == 0) continue;
        const float mx = std::max(r.m[i], row_max(s, n_vis));
        const float corr = std::exp(r.m[i] - mx);
        float l = r.l[i] * corr;
        if (corr != 1.0f)
          for (float *acc = &r.acc[static_cast<size_t>(i * d)], *e = acc + d; acc < e; ++acc) *acc *= corr;
        l += k.exp_sub_sum(s, n_vis, mx);
        r.m[i] = mx;
        r.l[i] = l;
      }
      accumulate(r, *cur, n);
      std::swap(cur, next);
    }
  }

  int64_t seg_end(int64_t s) const { return std::min(tile.n_kv, (s + 1) * kSegment); }

  // Row i's state as a merge partial: m, l, acc[d].
  void save(const Rows& r, int64_t i, float* p) const {
    p[0] = r.m[i];
    p[1] = r.l[i];
    std::copy(&r.acc[static_cast<size_t>(i * d)], &r.acc[static_cast<size_t>((i + 1) * d)], p + 2);
  }

  float* out_row(int64_t i) const {
    return static_cast<float*>(a.out.row(kvh * group + i % group, tile.t0 + i / group));
  }
};

void FlashAttention::run(const AttentionArgs& a, const Kernels& k, ThreadPool& pool, bool exact) {
  check_attention(a);
  const int64_t T = a.q.ne[2], d = a.q.ne[0], n_kv_head = a.k.ne[1], group = a.q.ne[1] / n_kv_head;
  // The peer's rounding: q meets an f16 key as f16 (products then exact, scores exact in double).
  const bool round_q = !exact && a.k.dtype == DType::F16;
  const int64_t stride = d + 2;  // one merge partial: m, l, acc[d]

  // Tiles of consecutive tokens of one sequence. A lone token's segments become separate work items
  // (its partials meet in partial_); a multi-token tile runs its segments in one item.
  tiles_.clear();
  first_item_.clear();
  int64_t n_items = 0, n_partials = 0;
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
    const int64_t n_segs = (n_kv + kSegment - 1) / kSegment;
    const bool split = e - t == 1 && n_segs > 1;
    tiles_.push_back({t, e, n_kv, n_segs, split, split ? n_partials : -1});
    first_item_.push_back(n_items);
    n_items += n_kv_head * (split ? n_segs : 1);
    if (split) n_partials += n_kv_head * n_segs * group;
    t = e;
  }
  partial_.resize(static_cast<size_t>(n_partials * stride));
  auto split_part = [&](const Tile& tile, int64_t kvh, int64_t seg, int64_t row) {
    return &partial_[static_cast<size_t>((tile.partial0 + (kvh * tile.n_segs + seg) * group + row) * stride)];
  };

  const int64_t rows_max = kTileTokens * group;
  auto item_at = [&](int64_t item) {
    const size_t ti = static_cast<size_t>(
        std::upper_bound(first_item_.begin(), first_item_.end(), item) - first_item_.begin() - 1);
    const Tile& tile = tiles_[ti];
    const int64_t local = item - first_item_[ti];
    const int64_t per_head = tile.split ? tile.n_segs : 1;
    const int64_t kvh = local / per_head, s0 = tile.split ? local % per_head : 0;
    const int64_t s1 = tile.split ? s0 + 1 : tile.n_segs;
    return Item{a, k, tile, kvh, s0, s1, d, group, a.seqs[a.token_seq[tile.t0]]};
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

  pool.parallel_for_dynamic(n_items, [&](int64_t i0, int64_t i1) {
    Rows& r = rows_scratch();
    for (int64_t k = i0; k < i1; ++k) {
      const Item it = item_at(n_items - 1 - k);  // later (causally longer) tiles first
      const Tile& tile = it.tile;
      it.load_queries(r, round_q);
      if (tile.n_segs == 1) {
        // One segment: normalise in place (the same arithmetic as a one-segment merge).
        it.reset(r);
        it.online(r, 0, tile.n_kv);
        for (int64_t i = 0; i < r.n; ++i) {
          float* o = it.out_row(i);
          const float* acc = &r.acc[static_cast<size_t>(i * d)];
          const float inv = r.l[i] > 0 ? 1.0f / r.l[i] : 0.0f;
          for (int64_t j = 0; j < d; ++j) o[j] = acc[j] * inv;
        }
      } else if (tile.split) {
        it.reset(r);
        it.online(r, it.s0 * kSegment, it.seg_end(it.s0));
        for (int64_t i = 0; i < r.n; ++i) it.save(r, i, split_part(tile, it.kvh, it.s0, i));
      } else {
        r.seg_partial.resize(static_cast<size_t>(tile.n_segs * r.n * stride));
        auto part = [&](int64_t seg, int64_t i) { return &r.seg_partial[static_cast<size_t>((seg * r.n + i) * stride)]; };
        for (int64_t s = 0; s < tile.n_segs; ++s) {
          it.reset(r);
          it.online(r, s * kSegment, it.seg_end(s));
          for (int64_t i = 0; i < r.n; ++i) it.save(r, i, part(s, i));
        }
        for (int64_t i = 0; i < r.n; ++i)
          merge_segments(tile.n_segs, d, [&](int64_t s) { return part(s, i); }, it.out_row(i));
      }
    }
  });

  // Merge the split tiles' segments, their rows spread over the threads.
  split_tiles_.clear();
  for (const Tile& tile : tiles_)
    if (tile.split) split_tiles_.push_back(&tile);
  const int64_t rows_per_tile = n_kv_head * group;
  pool.parallel_for(static_cast<int64_t>(split_tiles_.size()) * rows_per_tile, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const Tile& tile = *split_tiles_[static_cast<size_t>(r / rows_per_tile)];
      const int64_t kvh = r % rows_per_tile / group, g = r % group;
      merge_segments(tile.n_segs, d, [&](int64_t s) { return split_part(tile, kvh, s, g); },
                     static_cast<float*>(a.out.row(kvh * group + g, tile.t0)));
    }
  });
}

}  // namespace tern::cpu
