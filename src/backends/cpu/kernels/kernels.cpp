#include "backends/cpu/kernels/kernels.h"

#include <cmath>
#include <cstring>

#include "backends/cpu/repack.h"
#include "core/error.h"
#include "core/fp16.h"
#include "quant/k_scales.h"
#include "quant/quant.h"

namespace tern::cpu {

Kernels make_avx2_kernels();    // kernels_avx2.cpp
Kernels make_avx512_kernels();  // kernels_avx512.cpp

namespace {

#include "backends/cpu/kernels/rope_rotate.inc"

template <DType W>
float generic_vec_dot(const void* w, const void* a, int64_t n) {
  return quant::vec_dot(W, w, a, n);
}

template <DType... Ts>
Kernels generic_table() {
  static_assert(((static_cast<size_t>(Ts) < kTypeSlots) && ...));
  Kernels k{};
  ((k.vec_dot[static_cast<size_t>(Ts)] = generic_vec_dot<Ts>), ...);
  return k;
}

// ggml's x86 summation order in plain C++ for the types the SIMD variants accelerate, so that
// every variant gives the same bits (and the generic path stays as close to the peer as AVX2):
// per 32-element block, lane k (k < 8) holds the integer dot of elements 4k..4k+3, scaled by the
// product of the block scales and accumulated with a fused multiply-add; then a fixed tree sum.
float lane_tree_sum(const float* v) {
  return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

// Integer weight levels of one block (already offset: Q4_0 subtracts 8).
template <DType W>
void block_levels(const uint8_t* blk, int32_t* q) {
  if constexpr (W == DType::Q8_0) {
    for (int i = 0; i < 32; ++i) q[i] = static_cast<int8_t>(blk[2 + i]);
  } else if constexpr (W == DType::Q5_0 || W == DType::Q5_1) {
    // {f16 d, (f16 m,) 4 bytes of fifth bits, 16 nibble bytes}; Q5_0's levels are offset by 16.
    const size_t h = W == DType::Q5_0 ? 2 : 4;
    uint32_t qh;
    std::memcpy(&qh, blk + h, 4);
    const int32_t off = W == DType::Q5_0 ? 16 : 0;
    for (int i = 0; i < 16; ++i) {
      q[i] = ((blk[h + 4 + i] & 0x0F) | ((qh >> i) & 1) << 4) - off;
      q[i + 16] = ((blk[h + 4 + i] >> 4) | ((qh >> (i + 16)) & 1) << 4) - off;
    }
  } else {
    const uint8_t* nib = blk + (W == DType::Q4_0 ? 2 : 4);
    const int32_t off = W == DType::Q4_0 ? 8 : 0;
    for (int i = 0; i < 16; ++i) {
      q[i] = (nib[i] & 0x0F) - off;
      q[i + 16] = (nib[i] >> 4) - off;
    }
  }
}

template <DType W>
float lane_order_vec_dot(const void* vw, const void* va, int64_t n) {
  constexpr bool kMin = W == DType::Q4_1 || W == DType::Q5_1;  // Q8_1 activations, weight min
  constexpr size_t wb = W == DType::Q4_0   ? 18
                        : W == DType::Q4_1 ? 20
                        : W == DType::Q5_0 ? 22
                        : W == DType::Q5_1 ? 24
                                           : 34;
  constexpr size_t ab = kMin ? 36 : 34;  // Q8_1 / Q8_0 activations
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float mins = 0;
  int32_t q[32];
  for (int64_t b = 0; b < n / 32; ++b, w += wb, a += ab) {
    uint16_t h[4];
    std::memcpy(h, w, 4);
    const uint16_t ad = static_cast<uint16_t>(a[0] | a[1] << 8), as = static_cast<uint16_t>(a[2] | a[3] << 8);
    if constexpr (kMin) mins = std::fma(fp16_to_f32(h[1]), fp16_to_f32(as), mins);
    const float d = fp16_to_f32(h[0]) * fp16_to_f32(ad);
    block_levels<W>(w, q);
    const auto* qa = reinterpret_cast<const int8_t*>(a + (kMin ? 4 : 2));
    for (int k = 0; k < 8; ++k) {
      const int32_t s = q[4 * k] * qa[4 * k] + q[4 * k + 1] * qa[4 * k + 1] + q[4 * k + 2] * qa[4 * k + 2] +
                        q[4 * k + 3] * qa[4 * k + 3];
      acc[k] = std::fma(d, static_cast<float>(s), acc[k]);
    }
  }
  return lane_tree_sum(acc) + mins;
}

// Q4_K against Q8_K in the x86 kernels' order (kernels_x86.inc, struct Q4_K): per super-block, lane
// k holds sum over the eight sub-blocks of scale * (four-byte products at 4k..4k+3 of the
// sub-block), one FMA per lane; the mins term exact in integers, one FMA per super-block.
// Q5_K (kFifth) is the same with 32 bytes of fifth bits before the nibbles: bit 2c of byte l for
// element 64c + l, bit 2c + 1 for element 64c + 32 + l.
template <bool kFifth>
float lane_order_qk(const void* vw, const void* va, int64_t n) {
  constexpr size_t kBlock = kFifth ? 176 : 144, kQs = kFifth ? 48 : 16;
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float acc_min = 0;
  for (int64_t b = 0; b < n / 256; ++b, w += kBlock, a += 292) {
    const float dw = fp16_to_f32(static_cast<uint16_t>(w[0] | w[1] << 8));
    const float dmin = fp16_to_f32(static_cast<uint16_t>(w[2] | w[3] << 8));
    float da;
    std::memcpy(&da, a, 4);
    const uint8_t* s = w + 4;
    int32_t sc[8], mn[8];
    for (int j = 0; j < 4; ++j) {
      sc[j] = s[j] & 63;
      mn[j] = s[j + 4] & 63;
      sc[j + 4] = (s[j + 8] & 0xF) | ((s[j] >> 6) << 4);
      mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    const auto* qa = reinterpret_cast<const int8_t*>(a + 4);
    int16_t bs[16];
    std::memcpy(bs, a + 260, 32);
    int32_t lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0}, msum = 0;
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = w + kQs + 32 * c;
      for (int k = 0; k < 8; ++k) {
        int32_t lo = 0, hi = 0;
        for (int i = 0; i < 4; ++i) {
          const int l = 4 * k + i;
          const int fl = kFifth ? ((w[16 + l] >> (2 * c)) & 1) << 4 : 0;
          const int fh = kFifth ? ((w[16 + l] >> (2 * c + 1)) & 1) << 4 : 0;
          lo += ((q[l] & 0x0F) | fl) * qa[64 * c + l];
          hi += ((q[l] >> 4) | fh) * qa[64 * c + 32 + l];
        }
        lanes[k] += sc[2 * c] * lo + sc[2 * c + 1] * hi;
      }
    }
    for (int j = 0; j < 8; ++j) msum += mn[j] * (bs[2 * j] + bs[2 * j + 1]);
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(dw * da, static_cast<float>(lanes[k]), acc[k]);
    acc_min = std::fma(dmin * da, static_cast<float>(msum), acc_min);
  }
  return lane_tree_sum(acc) - acc_min;
}

// Q6_K and Q3_K against Q8_K in the x86 kernels' order (kernels_x86.inc, structs Q6_K and Q3_K):
// unsigned levels u with signed per-16 scales, the level offset (32, 4) taken off through the
// activation's 16-element sums. P: the block's size, d, scales and levels.
template <class P>
float lane_order_offset_k(const void* vw, const void* va, int64_t n) {
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float acc_min = 0;
  for (int64_t b = 0; b < n / 256; ++b, w += P::kBlock, a += 292) {
    const float dw = fp16_to_f32(static_cast<uint16_t>(w[P::kD] | w[P::kD + 1] << 8));
    float da;
    std::memcpy(&da, a, 4);
    int32_t sc[16];
    for (int i = 0; i < 16; ++i) sc[i] = P::scale(w, i);
    const auto* qa = reinterpret_cast<const int8_t*>(a + 4);
    int16_t bs[16];
    std::memcpy(bs, a + 260, 32);
    int32_t lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0}, msum = 0;
    for (int h = 0; h < 2; ++h)
      for (int x = 0; x < 4; ++x)
        for (int k = 0; k < 8; ++k) {
          int32_t dot = 0;
          for (int i = 0; i < 4; ++i) {
            const int l = 4 * k + i;  // element 128h + 32x + l
            dot += P::level(w, h, x, l) * qa[128 * h + 32 * x + l];
          }
          lanes[k] += sc[(128 * h + 32 * x + 4 * k) / 16] * dot;
        }
    for (int i = 0; i < 16; ++i) msum += sc[i] * bs[i];
    const float d = dw * da;
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(lanes[k]), acc[k]);
    acc_min = std::fma(d, static_cast<float>(P::kOffset * msum), acc_min);
  }
  return lane_tree_sum(acc) - acc_min;
}

// Q6_K: low nibbles in bytes 64h + 32(x & 1) + l (high nibble for x >= 2), two high bits at bit 2x
// of byte 128 + 32h + l; int8 scales at 192; d at 208.
struct Q6Lanes {
  static constexpr size_t kBlock = 210, kD = 208;
  static constexpr int kOffset = 32;
  static int32_t scale(const uint8_t* w, int i) { return static_cast<int8_t>(w[192 + i]); }
  static int level(const uint8_t* w, int h, int x, int l) {
    const uint8_t lo = w[64 * h + 32 * (x & 1) + l];
    return ((x < 2 ? lo : lo >> 4) & 0x0F) | ((w[128 + 32 * h + l] >> (2 * x)) & 3) << 4;
  }
};

// Q3_K: two low bits at bit 2x of byte 32 + 32h + l, the third at bit 4h + x of byte l; 6-bit
// scales (minus 32) at 96; d at 108.
struct Q3Lanes {
  static constexpr size_t kBlock = 110, kD = 108;
  static constexpr int kOffset = 4;
  static int32_t scale(const uint8_t* w, int i) { return quant::get_scale_q3k(i, w + 96) - 32; }
  static int level(const uint8_t* w, int h, int x, int l) {
    return ((w[32 + 32 * h + l] >> (2 * x)) & 3) | ((w[l] >> (4 * h + x)) & 1) << 2;
  }
};

// Q2_K against Q8_K in the x86 kernels' order (kernels_x86.inc, struct Q2_K).
float lane_order_q2_k(const void* vw, const void* va, int64_t n) {
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float acc_min = 0;
  for (int64_t b = 0; b < n / 256; ++b, w += 84, a += 292) {
    const float dw = fp16_to_f32(static_cast<uint16_t>(w[80] | w[81] << 8));
    const float dmin = fp16_to_f32(static_cast<uint16_t>(w[82] | w[83] << 8));
    float da;
    std::memcpy(&da, a, 4);
    const auto* qa = reinterpret_cast<const int8_t*>(a + 4);
    int16_t bs[16];
    std::memcpy(bs, a + 260, 32);
    int32_t lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0}, msum = 0;
    for (int h = 0; h < 2; ++h)
      for (int x = 0; x < 4; ++x)
        for (int k = 0; k < 8; ++k) {
          int32_t dot = 0;
          for (int i = 0; i < 4; ++i) {
            const int l = 4 * k + i;  // element 128h + 32x + l
            dot += ((w[16 + 32 * h + l] >> (2 * x)) & 3) * qa[128 * h + 32 * x + l];
          }
          lanes[k] += (w[(128 * h + 32 * x + 4 * k) / 16] & 0x0F) * dot;
        }
    for (int i = 0; i < 16; ++i) msum += (w[i] >> 4) * bs[i];
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(dw * da, static_cast<float>(lanes[k]), acc[k]);
    acc_min = std::fma(dmin * da, static_cast<float>(msum), acc_min);
  }
  return lane_tree_sum(acc) - acc_min;
}

// F32, F16 and BF16 weights against activations of their own type: eight lanes, lane k summing
// elements k, k + 8, ... with fused multiply-adds, the lane tree sum, then the tail (n % 8) fused
// one by one. The SIMD variants do exactly this, eight lanes to a vector.
template <DType W>
float plain_element(const void* p, int64_t i) {
  if constexpr (W == DType::F32) return static_cast<const float*>(p)[i];
  else if constexpr (W == DType::F16) return fp16_to_f32(static_cast<const uint16_t*>(p)[i]);
  else return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

template <DType W>
float lane_order_plain_dot(const void* w, const void* a, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const int64_t n8 = n / 8 * 8;
  for (int64_t i = 0; i < n8; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(plain_element<W>(w, i + k), plain_element<W>(a, i + k), acc[k]);
  float s = lane_tree_sum(acc);
  for (int64_t i = n8; i < n; ++i) s = std::fma(plain_element<W>(w, i), plain_element<W>(a, i), s);
  return s;
}

// Four independent double partial sums: vectorisable at any ISA, and a fixed order.
float dot_f32_generic(const float* a, const float* b, int64_t n) {
  double acc[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) acc[k] += static_cast<double>(a[i + k]) * b[i + k];
  double s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(s);
}

template <DType W>
void scores_rows_generic(const double* q, int64_t n_rows, const void* const* k, int64_t n_pos, int64_t d, float scale,
                         float* out, int64_t ld) {
  for (int64_t p = 0; p < n_pos; ++p)
    for (int64_t i = 0; i < n_rows; ++i) {
      double acc[4] = {0, 0, 0, 0};
      const double* qi = q + i * d;
      int64_t c = 0;
      for (; c + 4 <= d; c += 4)
        for (int u = 0; u < 4; ++u) acc[u] += qi[c + u] * plain_element<W>(k[p], c + u);
      double s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      for (; c < d; ++c) s += qi[c] * plain_element<W>(k[p], c);
      out[i * ld + p] = static_cast<float>(s) * scale;
    }
}
void scores_generic(const double* q, int64_t n_rows, KvRows k, int64_t n_pos, int64_t d, float scale, float* out,
                    int64_t ld) {
  if (k.f16) scores_rows_generic<DType::F16>(q, n_rows, k.rows, n_pos, d, scale, out, ld);
  else scores_rows_generic<DType::F32>(q, n_rows, k.rows, n_pos, d, scale, out, ld);
}

// exp(x) for x <= 0 (softmax arguments), computed in double and rounded once to float, so that it
// is the correctly rounded value but where the true one lies within ~1e-10 (relative) of a float
// rounding boundary: x = n ln2 + r with |r| <= ln2/2, e^r by its degree-8 Taylor polynomial (Horner,
// fused; truncation error < 3e-10), times 2^n by exponent arithmetic. Every step is one IEEE
// operation, so the SIMD variants, doing the same steps, give the same bits.
float exp_f32(float x) {
  if (!(x > -87.0f)) return 0.0f;  // underflow, -inf (and NaN) -> 0
  if (x > 89.0f) return INFINITY;
  const double xd = x;
  const double n = std::nearbyint(xd * 1.4426950408889634);
  const double r = std::fma(n, -0.6931471805599453, xd);
  double p = 1.0 / 40320;
  p = std::fma(p, r, 1.0 / 5040);
  p = std::fma(p, r, 1.0 / 720);
  p = std::fma(p, r, 1.0 / 120);
  p = std::fma(p, r, 1.0 / 24);
  p = std::fma(p, r, 1.0 / 6);
  p = std::fma(p, r, 0.5);
  p = std::fma(p, r, 1.0);
  p = std::fma(p, r, 1.0);
  const int64_t bits = (static_cast<int64_t>(n) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, 8);
  return static_cast<float>(p * scale);
}

float exp_sub_sum_generic(float* s, int64_t n, float m) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const int64_t n8 = n / 8 * 8;
  for (int64_t j = 0; j < n8; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += (s[j + k] = exp_f32(s[j + k] - m));
  float sum = lane_tree_sum(acc);
  for (int64_t j = n8; j < n; ++j) sum += (s[j] = exp_f32(s[j] - m));
  return sum;
}

void f32_to_f16_generic(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

void swiglu_generic(const float* g, const float* u, float* o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = g[i] / (1.0f + exp_f32(-g[i])) * u[i];
}

void round_f16_generic(const float* x, double* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

template <DType W>
void weighted_rows_generic(const float* w, int64_t n_rows, int64_t ld, const void* const* v, int64_t n_pos, int64_t d,
                           float* acc) {
  for (int64_t i = 0; i < n_rows; ++i)
    for (int64_t p = 0; p < n_pos; ++p) {
      const float wp = w[i * ld + p];
      if (wp == 0.0f) continue;
      float* ai = acc + i * d;
      // Fused, as the SIMD variants' FMA: same bits on every variant.
      for (int64_t c = 0; c < d; ++c) ai[c] = std::fma(wp, plain_element<W>(v[p], c), ai[c]);
    }
}
void weighted_values_generic(const float* w, int64_t n_rows, int64_t ld, KvRows v, int64_t n_pos, int64_t d,
                             float* acc) {
  if (v.f16) weighted_rows_generic<DType::F16>(w, n_rows, ld, v.rows, n_pos, d, acc);
  else weighted_rows_generic<DType::F32>(w, n_rows, ld, v.rows, n_pos, d, acc);
}

// Q4_0 (kHead 2) and Q4_1 (kHead 4) in groups of eight rows: Kernels::gemv_q4_0_x8 and
// gemv_q4_1_x8 in scalar code, the arithmetic every variant reproduces bit for bit.
template <int kHead>
void gemv_q4_x8_generic(const void* vw, size_t group_bytes, int64_t n_groups, const void* va, int64_t n, float* out) {
  constexpr int64_t kBlock = 8 * kHead + 128, kActBlock = kHead == 2 ? 34 : 36;
  const int64_t nb = n / 32;
  const auto* a = static_cast<const uint8_t*>(va);
  auto h2f = [](const uint8_t* p) { return fp16_to_f32(static_cast<uint16_t>(p[0] | p[1] << 8)); };
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto* w = static_cast<const uint8_t*>(vw) + g * group_bytes;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, accm[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* ab = a + b * kActBlock;
      const auto* qa = reinterpret_cast<const int8_t*>(ab + kHead);
      const float da = h2f(ab);
      int32_t asum = 0;  // Q4_0's levels are offset by 8
      if constexpr (kHead == 2)
        for (int i = 0; i < 32; ++i) asum += qa[i];
      const uint8_t* wb = w + b * kBlock;
      for (int r = 0; r < 8; ++r) {
        int32_t isum = kHead == 2 ? -8 * asum : 0;
        for (int k = 0; k < 4; ++k)
          for (int i = 0; i < 4; ++i) {
            const uint8_t byte = wb[8 * kHead + 32 * k + 4 * r + i];
            isum += (byte & 0x0F) * qa[4 * k + i] + (byte >> 4) * qa[4 * (k + 4) + i];
          }
        acc[r] = std::fma(h2f(wb + 2 * r) * da, static_cast<float>(isum), acc[r]);
        if constexpr (kHead == 4) accm[r] = std::fma(h2f(wb + 16 + 2 * r), h2f(ab + 2), accm[r]);
      }
    }
    for (int r = 0; r < 8; ++r) out[8 * g + r] = kHead == 4 ? acc[r] + accm[r] : acc[r];
  }
}

// The K-quants' grouped GEMVs of the generic variant (repack.h for the layouts): per group,
// super-block and row, L::sums forms the row's exact integer sums isum and (L::kMins) msum from its
// levels, scales and mins, the activation levels qa and 16-element sums bs; then one FMA of isum
// times d * da into acc and one of msum times dmin * da into accm (d[8] at byte 0, dmin[8] at 16 of
// every super-block); the row's result acc - accm, or acc.
template <class L>
void gemv_k_x8_generic(const void* vw, size_t group_bytes, int64_t n_groups, const void* va, int64_t n, float* out) {
  const int64_t nsb = n / 256;
  const auto* a = static_cast<const uint8_t*>(va);
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto* w = static_cast<const uint8_t*>(vw) + g * group_bytes;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, accm[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t b = 0; b < nsb; ++b) {
      const uint8_t* ab = a + b * 292;
      float da;
      std::memcpy(&da, ab, 4);
      const auto* qa = reinterpret_cast<const int8_t*>(ab + 4);
      int16_t bs[16];
      std::memcpy(bs, ab + 260, 32);
      const uint8_t* wb = w + b * L::kBlock;
      for (int r = 0; r < 8; ++r) {
        int32_t isum = 0, msum = 0;
        L::sums(wb, r, qa, bs, isum, msum);
        acc[r] = std::fma(fp16_to_f32(static_cast<uint16_t>(wb[2 * r] | wb[2 * r + 1] << 8)) * da, static_cast<float>(isum),
                          acc[r]);
        if constexpr (L::kMins)
          accm[r] = std::fma(fp16_to_f32(static_cast<uint16_t>(wb[16 + 2 * r] | wb[16 + 2 * r + 1] << 8)) * da,
                             static_cast<float>(msum), accm[r]);
      }
    }
    for (int r = 0; r < 8; ++r) out[8 * g + r] = L::kMins ? acc[r] - accm[r] : acc[r];
  }
}

// Q4_K: isum = sum_j sc_j * (sub-block j's dot), msum = sum_j m_j * (sub-block j's activation sum).
// Q5_K (kFifth) the same with each level's fifth bit from the 32 bytes after its sub-block's nibbles.
template <bool kFifth>
struct QKx8Levels {
  static constexpr int64_t kBlock = kFifth ? kQ5_Kx8Block : kQ4_Kx8Block, kUnit = kFifth ? 160 : 128;
  static constexpr bool kMins = true;
  static void sums(const uint8_t* wb, int r, const int8_t* qa, const int16_t* bs, int32_t& isum, int32_t& msum) {
    uint8_t field[12];
    qk_x8_row_scales(wb + 32, r, field);
    for (int j = 0; j < 8; ++j) {
      const uint8_t* unit = wb + kQKx8Units + kUnit * j;
      int32_t dot = 0;
      for (int k = 0; k < 8; ++k)
        for (int i = 0; i < 4; ++i) dot += qk_x8_level<kFifth>(unit, r, k, i) * qa[32 * j + 4 * k + i];
      int sc = 0, m = 0;
      quant::get_scale_min_k4(j, field, sc, m);
      isum += sc * dot;
      msum += m * (bs[2 * j] + bs[2 * j + 1]);
    }
  }
};

// Q6_K and Q3_K: isum = sum over the 16 sub-blocks of scale * (dot of the unsigned levels - kOffset
// * activation sum), no mins. level(unit, r, k, i): row r's element 4k + i of a unit.
template <class P>
struct OffsetKx8Levels {
  static constexpr int64_t kBlock = P::kBlock;
  static constexpr bool kMins = false;
  static void sums(const uint8_t* wb, int r, const int8_t* qa, const int16_t* bs, int32_t& isum, int32_t&) {
    for (int s = 0; s < 16; ++s) {
      const int j = s / 2;
      int32_t dot = -P::kOffset * bs[s];
      for (int k = 4 * (s % 2); k < 4 * (s % 2) + 4; ++k)
        for (int i = 0; i < 4; ++i) dot += P::level(wb + 144 + P::kUnit * j, r, k, i) * qa[32 * j + 4 * k + i];
      isum += static_cast<int8_t>(wb[16 + 8 * s + r]) * dot;
    }
  }
};
struct Q6x8Bits {
  static constexpr int64_t kBlock = kQ6_Kx8Block, kUnit = 192;
  static constexpr int kOffset = 32;
  static int level(const uint8_t* unit, int r, int k, int i) { return q6_k_x8_level(unit, r, k, i); }
};
struct Q3x8Bits {
  static constexpr int64_t kBlock = kQ3_Kx8Block, kUnit = 96;
  static constexpr int kOffset = 4;
  static int level(const uint8_t* unit, int r, int k, int i) { return q3_k_x8_level(unit, r, k, i); }
};

// Q2_K: isum = sum over the 16 sub-blocks of scale * dot, msum = sum of min * activation sum (scale
// and min the low and high nibbles of the sub-block's byte).
struct Q2Kx8Levels {
  static constexpr int64_t kBlock = kQ2_Kx8Block;
  static constexpr bool kMins = true;
  static void sums(const uint8_t* wb, int r, const int8_t* qa, const int16_t* bs, int32_t& isum, int32_t& msum) {
    for (int s = 0; s < 16; ++s) {
      const int j = s / 2;
      int32_t dot = 0;
      for (int k = 4 * (s % 2); k < 4 * (s % 2) + 4; ++k)
        for (int i = 0; i < 4; ++i) dot += low2_x8_level(wb + 160 + 64 * j, r, k, i) * qa[32 * j + 4 * k + i];
      const uint8_t sm = wb[32 + 8 * s + r];
      isum += (sm & 0x0F) * dot;
      msum += (sm >> 4) * bs[s];
    }
  }
};

void gemv_q8_0_x8_generic(const void* vw, size_t group_bytes, int64_t n_groups, const void* va, int64_t n,
                          float* out) {
  const int64_t nb = n / 32;
  const auto* a = static_cast<const uint8_t*>(va);
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto* w = static_cast<const uint8_t*>(vw) + g * group_bytes;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* ab = a + b * 34;
      const auto* qa = reinterpret_cast<const int8_t*>(ab + 2);
      const float da = fp16_to_f32(static_cast<uint16_t>(ab[0] | ab[1] << 8));
      const uint8_t* wb = w + b * 272;
      for (int r = 0; r < 8; ++r) {
        int32_t isum = 0;
        for (int k = 0; k < 8; ++k)
          for (int i = 0; i < 4; ++i) isum += static_cast<int8_t>(wb[16 + 32 * k + 4 * r + i]) * qa[4 * k + i];
        const float dw = fp16_to_f32(static_cast<uint16_t>(wb[2 * r] | wb[2 * r + 1] << 8));
        acc[r] = std::fma(dw * da, static_cast<float>(isum), acc[r]);
      }
    }
    for (int r = 0; r < 8; ++r) out[8 * g + r] = acc[r];
  }
}

// The grouped GEMMs of the generic variant: the GEMV once per token (the contract of GemmX8Fn).
template <GemvX8Fn Gemv>
void gemm_per_token(const void* vw, size_t group_bytes, int64_t n_groups, const void* va, size_t a_stride,
                    int64_t n_tok, int64_t n, float* y, size_t y_stride) {
  for (int64_t t = 0; t < n_tok; ++t)
    Gemv(vw, group_bytes, n_groups, static_cast<const uint8_t*>(va) + t * a_stride, n, y + t * y_stride);
}

// Every matmul weight type, through the scalar reference arithmetic.
Kernels make_generic_kernels() {
  Kernels k = generic_table<DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                            DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K>();
  k.vec_dot[static_cast<size_t>(DType::Q4_0)] = lane_order_vec_dot<DType::Q4_0>;
  k.vec_dot[static_cast<size_t>(DType::Q4_1)] = lane_order_vec_dot<DType::Q4_1>;
  k.vec_dot[static_cast<size_t>(DType::Q8_0)] = lane_order_vec_dot<DType::Q8_0>;
  k.vec_dot[static_cast<size_t>(DType::Q5_0)] = lane_order_vec_dot<DType::Q5_0>;
  k.vec_dot[static_cast<size_t>(DType::Q5_1)] = lane_order_vec_dot<DType::Q5_1>;
  k.vec_dot[static_cast<size_t>(DType::Q4_K)] = lane_order_qk<false>;
  k.vec_dot[static_cast<size_t>(DType::Q5_K)] = lane_order_qk<true>;
  k.vec_dot[static_cast<size_t>(DType::Q6_K)] = lane_order_offset_k<Q6Lanes>;
  k.vec_dot[static_cast<size_t>(DType::Q2_K)] = lane_order_q2_k;
  k.vec_dot[static_cast<size_t>(DType::Q3_K)] = lane_order_offset_k<Q3Lanes>;
  k.vec_dot[static_cast<size_t>(DType::F32)] = lane_order_plain_dot<DType::F32>;
  k.vec_dot[static_cast<size_t>(DType::F16)] = lane_order_plain_dot<DType::F16>;
  k.vec_dot[static_cast<size_t>(DType::BF16)] = lane_order_plain_dot<DType::BF16>;
  k.dot_f32 = dot_f32_generic;
  k.scores = scores_generic;
  k.weighted_values = weighted_values_generic;
  k.exp_sub_sum = exp_sub_sum_generic;
  k.f32_to_f16 = f32_to_f16_generic;
  k.swiglu = swiglu_generic;
  k.rope_rotate = rope_rotate;
  k.round_f16 = round_f16_generic;
  k.gemv_q4_0_x8 = gemv_q4_x8_generic<2>;
  k.gemv_q4_k_x8 = gemv_k_x8_generic<QKx8Levels<false>>;
  k.gemm_q4_0_x8 = gemm_per_token<gemv_q4_x8_generic<2>>;
  k.gemm_q4_k_x8 = gemm_per_token<gemv_k_x8_generic<QKx8Levels<false>>>;
  k.gemv_q5_k_x8 = gemv_k_x8_generic<QKx8Levels<true>>;
  k.gemm_q5_k_x8 = gemm_per_token<gemv_k_x8_generic<QKx8Levels<true>>>;
  k.gemv_q8_0_x8 = gemv_q8_0_x8_generic;
  k.gemm_q8_0_x8 = gemm_per_token<gemv_q8_0_x8_generic>;
  k.gemv_q4_1_x8 = gemv_q4_x8_generic<4>;
  k.gemm_q4_1_x8 = gemm_per_token<gemv_q4_x8_generic<4>>;
  k.gemv_q6_k_x8 = gemv_k_x8_generic<OffsetKx8Levels<Q6x8Bits>>;
  k.gemm_q6_k_x8 = gemm_per_token<gemv_k_x8_generic<OffsetKx8Levels<Q6x8Bits>>>;
  k.gemv_q2_k_x8 = gemv_k_x8_generic<Q2Kx8Levels>;
  k.gemm_q2_k_x8 = gemm_per_token<gemv_k_x8_generic<Q2Kx8Levels>>;
  k.gemv_q3_k_x8 = gemv_k_x8_generic<OffsetKx8Levels<Q3x8Bits>>;
  k.gemm_q3_k_x8 = gemm_per_token<gemv_k_x8_generic<OffsetKx8Levels<Q3x8Bits>>>;
  return k;
}

// A variant's table with its gaps filled from the generic one.
Kernels completed(Kernels k, const Kernels& generic) {
  for (size_t i = 0; i < kTypeSlots; ++i)
    if (!k.vec_dot[i])
      k.vec_dot[i] = generic.vec_dot[i], k.vec_dot_rows1[i] = generic.vec_dot_rows1[i],
      k.vec_dot_rows4[i] = generic.vec_dot_rows4[i], k.gemm_panel[i] = generic.gemm_panel[i],
      k.gemm_rows[i] = generic.gemm_rows[i],
      k.gemm_prepare[i] = generic.gemm_prepare[i], k.gemm_prep_per_block[i] = generic.gemm_prep_per_block[i];
  if (!k.dot_f32) k.dot_f32 = generic.dot_f32;
  if (!k.scores) k.scores = generic.scores;
  if (!k.weighted_values) k.weighted_values = generic.weighted_values;
  if (!k.exp_sub_sum) k.exp_sub_sum = generic.exp_sub_sum;
  if (!k.f32_to_f16) k.f32_to_f16 = generic.f32_to_f16;
  if (!k.swiglu) k.swiglu = generic.swiglu;
  if (!k.round_f16) k.round_f16 = generic.round_f16;
  if (!k.rope_rotate) k.rope_rotate = generic.rope_rotate;
  if (!k.gemv_q4_0_x8) k.gemv_q4_0_x8 = generic.gemv_q4_0_x8;
  if (!k.gemv_q4_k_x8) k.gemv_q4_k_x8 = generic.gemv_q4_k_x8;
  if (!k.gemm_q4_0_x8) k.gemm_q4_0_x8 = generic.gemm_q4_0_x8;
  if (!k.gemm_q4_k_x8) k.gemm_q4_k_x8 = generic.gemm_q4_k_x8;
  if (!k.gemv_q8_0_x8) k.gemv_q8_0_x8 = generic.gemv_q8_0_x8;
  if (!k.gemm_q8_0_x8) k.gemm_q8_0_x8 = generic.gemm_q8_0_x8;
  if (!k.gemv_q4_1_x8) k.gemv_q4_1_x8 = generic.gemv_q4_1_x8;
  if (!k.gemm_q4_1_x8) k.gemm_q4_1_x8 = generic.gemm_q4_1_x8;
  if (!k.gemv_q5_k_x8) k.gemv_q5_k_x8 = generic.gemv_q5_k_x8;
  if (!k.gemm_q5_k_x8) k.gemm_q5_k_x8 = generic.gemm_q5_k_x8;
  if (!k.gemv_q2_k_x8) k.gemv_q2_k_x8 = generic.gemv_q2_k_x8;
  if (!k.gemm_q2_k_x8) k.gemm_q2_k_x8 = generic.gemm_q2_k_x8;
  if (!k.gemv_q3_k_x8) k.gemv_q3_k_x8 = generic.gemv_q3_k_x8;
  if (!k.gemm_q3_k_x8) k.gemm_q3_k_x8 = generic.gemm_q3_k_x8;
  if (!k.gemv_q6_k_x8) k.gemv_q6_k_x8 = generic.gemv_q6_k_x8;
  if (!k.gemm_q6_k_x8) k.gemm_q6_k_x8 = generic.gemm_q6_k_x8;
  return k;
}

}  // namespace

const Kernels& kernels(Isa isa) {
  static const Kernels generic = make_generic_kernels();
  switch (isa) {
    case Isa::Generic: return generic;
    case Isa::Avx2: {
      TERN_CHECK(isa_supported(Isa::Avx2), "avx2 kernels requested on a CPU without AVX2/FMA/F16C");
      static const Kernels avx2 = completed(make_avx2_kernels(), generic);
      return avx2;
    }
    case Isa::Avx512: {
      TERN_CHECK(isa_supported(Isa::Avx512), "avx512 kernels requested on a CPU without AVX-512 VNNI");
      static const Kernels avx512 = completed(make_avx512_kernels(), generic);
      return avx512;
    }
  }
  return generic;
}

VecDotFn vec_dot_for(Isa isa, DType w) {
  const auto slot = static_cast<size_t>(w);
  TERN_CHECK(slot < kTypeSlots, "vec_dot: type id {} out of range", slot);
  VecDotFn f = kernels(isa).vec_dot[slot];
  TERN_CHECK(f, "{}: not a matmul weight type", dtype_name(w));
  return f;
}

}  // namespace tern::cpu
