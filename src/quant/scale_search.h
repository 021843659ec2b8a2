// Scale searches shared by the quantisers (after ggml-quants.c's make_qx_quants / make_qkx2_quants):
// pick a block scale (and min) that minimises the weighted squared (or absolute) rounding error
// rather than just mapping the extreme value to the end of the range.
#pragma once

#include <cmath>
#include <cstdint>

namespace tern::quant {

// Round half to even, as ggml's nearest_int (its magic-number trick) does for |x| < 2^22.
inline int nearest_int(float x) { return static_cast<int>(std::nearbyint(x)); }

// Symmetric levels L[i] in [0, 2*nmax) meaning (L[i] - nmax) * scale. Returns the scale.
// weights null: rmse_type 0 = plain max mapping, 1 = weight x^2 with a search of 18 nearby scales.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* weights);

// Affine levels L[i] in [0, nmax] meaning L[i] * scale - *neg_min. Returns the scale (>= 0) and
// stores the negated min (>= 0). use_mad weights |error| instead of error^2.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* neg_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);

}  // namespace tern::quant
