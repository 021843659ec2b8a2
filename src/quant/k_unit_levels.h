// One 32-element unit of a Q4_K / Q5_K / Q6_K super-block as 8-bit levels with integer scales, and
// its dot product with a unit of Q8_K activation levels as exact integer sums (ggml's formulation:
// four levels per 32-bit multiply-add), for the CUDA GEMV (dp4a) and its host-side test.
//
// Element e of the unit is, as the reference decodes it (quant_k.cpp):
//   Q4_K/Q5_K  d * sc * q_e - dmin * m         (q_e in 0..15 / 0..31; sc, m the sub-block's 6 bits)
//   Q6_K       d * sc_h * q_e                  (q_e in -32..31; sc_h the int8 scale of e's 16-half)
// and against activation levels a_e with scale d_a the dot is
//   d_a * (d * (sc_0 * S_0 + sc_1 * S_1) - dmin * m * A)
// with S_h the integer sums of q_e * a_e over the two halves and A the sum of a_e: the same value as
// the decoded dot up to float rounding (integer parts exact: |sc * S| < 2^24).
//
// Inputs are the block's bytes as 32-bit words, so device code can pass registers (a run-time
// byte index into a local array would put it in local memory).
#pragma once

#include <cstdint>

#include "quant/k_scales.h"

namespace tern::quant {

// a . b over four signed bytes, plus c (CUDA's __dp4a).
TERN_HOST_DEVICE inline int dot4(uint32_t a, uint32_t b, int c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(static_cast<int>(a), static_cast<int>(b), c);
#else
  for (int k = 0; k < 4; ++k) c += static_cast<int8_t>((a >> (8 * k)) & 0xFF) * static_cast<int8_t>((b >> (8 * k)) & 0xFF);
  return c;
#endif
}

// Byte i (0..11, may be a run-time value) of the 12-byte scale field held as three words.
TERN_HOST_DEVICE inline int scale_byte(const uint32_t (&w)[3], int i) {
  const uint32_t word = i < 4 ? w[0] : i < 8 ? w[1] : w[2];
  return static_cast<int>((word >> (8 * (i % 4))) & 0xFF);
}

// get_scale_min_k4 (k_scales.h) from the field as words.
TERN_HOST_DEVICE inline void scale_min_k4(const uint32_t (&w)[3], int j, int& sc, int& m) {
  if (j < 4) {
    sc = scale_byte(w, j) & 63;
    m = scale_byte(w, j + 4) & 63;
  } else {
    sc = (scale_byte(w, j + 4) & 0xF) | ((scale_byte(w, j - 4) >> 6) << 4);
    m = (scale_byte(w, j + 4) >> 4) | ((scale_byte(w, j) >> 6) << 4);
  }
}

struct KUnitLevels {
  uint32_t q[8];   // the 32 levels, four signed bytes per word in element order
  int sc[2];       // integer scale of elements 0..15 and 16..31 (Q4_K/Q5_K: the sub-block's, twice)
  int m;           // Q4_K/Q5_K: the sub-block's integer min; Q6_K: 0
  float d, dmin;   // the super-block's scales (Q6_K: dmin 0)
};

// Q4_K (kFive false) / Q5_K unit j (0..7) of a super-block: qs = the eight words of quant bytes
// 32 * (j / 2) .. + 31 (the unit is their low nibbles for even j, high for odd), qh (Q5_K) = the
// 32 bytes of fifth bits (bit j of byte l belongs to element l), scales = the 12-byte field.
template <bool kFive>
TERN_HOST_DEVICE inline void k45_unit(const uint32_t (&qs)[8], const uint32_t (&qh)[8], const uint32_t (&scales)[3],
                                      int j, float d, float dmin, KUnitLevels& u) {
  const int shift = 4 * (j % 2);
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    uint32_t q = (qs[k] >> shift) & 0x0F0F0F0Fu;
    if (kFive) q |= ((qh[k] >> j) & 0x01010101u) << 4;
    u.q[k] = q;
  }
  int sc = 0, m = 0;
  scale_min_k4(scales, j, sc, m);
  u.sc[0] = u.sc[1] = sc;
  u.m = m;
  u.d = d, u.dmin = dmin;
}

// Q6_K unit j (0..7): ql = the eight words of ql bytes 64 * (j / 4) + 32 * (j % 2) .. + 31 (low
// nibbles for j % 4 < 2, high otherwise), qh = the eight words of qh bytes 128 + 32 * (j / 4) ..
// + 31 (bits 2 * (j % 4) .. + 1), sc0 / sc1 = scales[2j] and scales[2j + 1].
TERN_HOST_DEVICE inline void q6k_unit(const uint32_t (&ql)[8], const uint32_t (&qh)[8], int j, int sc0, int sc1,
                                      float d, KUnitLevels& u) {
  const int jj = j % 4, lshift = 4 * (jj / 2), hshift = 2 * jj;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const uint32_t q = ((ql[k] >> lshift) & 0x0F0F0F0Fu) | (((qh[k] >> hshift) & 0x03030303u) << 4);  // 0..63
    u.q[k] = ((q | 0x80808080u) - 0x20202020u) ^ 0x80808080u;  // each byte minus 32, as a signed byte
  }
  u.sc[0] = sc0, u.sc[1] = sc1;
  u.m = 0;
  u.d = d, u.dmin = 0.0f;
}

// The unit's dot product with 32 activation levels a (four per word) of scale a_d. kMin: the
// format has mins (Q4_K, Q5_K).
template <bool kMin>
TERN_HOST_DEVICE inline float k_unit_dot(const KUnitLevels& u, const uint32_t (&a)[8], float a_d) {
  int s0 = 0, s1 = 0, sa = 0;
#pragma unroll
  for (int k = 0; k < 4; ++k) s0 = dot4(u.q[k], a[k], s0);
#pragma unroll
  for (int k = 4; k < 8; ++k) s1 = dot4(u.q[k], a[k], s1);
  float v = u.d * static_cast<float>(u.sc[0] * s0 + u.sc[1] * s1);
  if (kMin) {
#pragma unroll
    for (int k = 0; k < 8; ++k) sa = dot4(0x01010101u, a[k], sa);
    v -= u.dmin * static_cast<float>(u.m * sa);
  }
  return a_d * v;
}

}  // namespace tern::quant
