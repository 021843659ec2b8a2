// The 12-byte scale fields of the K-quants as ggml packs them, for every reader of those blocks:
// the reference codecs (quant_k.cpp), the CPU backend's repacking and the CUDA decoders, which
// include this header from device code (hence TERN_HOST_DEVICE).
//
// Q4_K/Q5_K: eight 6-bit (scale, min) pairs. Bytes 0..3 hold scales 0..3, bytes 4..7 mins 0..3
// (low 6 bits each); bytes 8..11 hold the low nibbles of scales/mins 4..7, and the top two bits of
// those go into the spare bits 6..7 of bytes 0..7 (ggml's get_scale_min_k4).
// Q3_K: sixteen 6-bit values; low nibbles in bytes 0..7 (j and j + 8 share byte j % 8), the top two
// bits of scale j in byte 8 + j % 4 at bit offset 2 * (j / 4).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define TERN_HOST_DEVICE __host__ __device__
#else
#define TERN_HOST_DEVICE
#endif

namespace tern::quant {

TERN_HOST_DEVICE inline void get_scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Into a zeroed field (the quantisers fill the pairs in order).
inline void set_scale_min_k4(int j, int sc, int m, uint8_t* q) {
  if (j < 4) {
    q[j] = static_cast<uint8_t>(sc);
    q[j + 4] = static_cast<uint8_t>(m);
  } else {
    q[j + 4] = static_cast<uint8_t>((sc & 0xF) | ((m & 0xF) << 4));
    q[j - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
    q[j] |= static_cast<uint8_t>((m >> 4) << 6);
  }
}

TERN_HOST_DEVICE inline int get_scale_q3k(int j, const uint8_t* s) {
  const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
  return lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

// Into a zeroed field.
inline void set_scale_q3k(int j, int v, uint8_t* s) {
  if (j < 8)
    s[j] |= static_cast<uint8_t>(v & 0xF);
  else
    s[j - 8] |= static_cast<uint8_t>((v & 0xF) << 4);
  s[8 + j % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (j / 4)));
}

}  // namespace tern::quant
