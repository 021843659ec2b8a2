// OCP FP8 E4M3 ("E4M3FN": 1 sign bit, 4 exponent bits with bias 7, 3 mantissa bits, no
// infinities, 0x7F/0xFF NaN, largest finite 448), for the KV cache's 8-bit float storage.
// Conversion rounds to nearest even and saturates at +-448, as the usual KV-cache FP8 casts do.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace tern {

inline float fp8_e4m3_to_f32(uint8_t c) {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) {
      const int e = (i >> 3) & 0xF, m = i & 7;
      float v;
      if (e == 0) v = std::ldexp(static_cast<float>(m), -9);  // subnormal: m/8 * 2^-6
      else if (e == 15 && m == 7) v = NAN;
      else v = std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
      t[i] = (i & 0x80) ? -v : v;
    }
    return t;
  }();
  return table[c];
}

inline uint8_t f32_to_fp8_e4m3(float f) {
  if (std::isnan(f)) return 0x7F;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  const float a = std::fabs(f);
  if (std::isinf(a)) return static_cast<uint8_t>(sign | 0x7E);
  if (a < 0.015625f) {  // below the smallest normal, 2^-6: multiples of 2^-9 (code 8 is 2^-6 itself)
    return static_cast<uint8_t>(sign | static_cast<uint8_t>(std::nearbyint(a * 512.0f)));
  }
  int e = 0;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  const int exp = e - 1 + 7;          // a = (2m) * 2^(e-1)
  int q = static_cast<int>(std::nearbyint((2.0f * m - 1.0f) * 8.0f));
  int code = (exp << 3) + q;  // q == 8 carries into the next binade, as the codes are monotonic
  if (exp > 15 || code > 0x7E) code = 0x7E;  // saturate at 448
  return static_cast<uint8_t>(sign | code);
}

}  // namespace tern
