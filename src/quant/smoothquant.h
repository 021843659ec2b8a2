// SmoothQuant (Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for
// Large Language Models", 2023): activations have a few channels far louder than the rest, which
// 8-bit activation rounding handles badly; weights do not. Dividing input channel j by
//   s_j = max|x_j|^alpha / max|w_:j|^(1 - alpha)
// and multiplying the weights' column j by s_j (folded into the preceding RMSNorm weight, so the
// float model is unchanged) migrates part of the difficulty from the activations to the weights,
// alpha setting how much. With Q8_0 storage and tern's dynamic 8-bit activations (per 32 elements,
// finer than the paper's per token) the model runs W8A8 on the integer dot products.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "quant/awq.h"

namespace tern::quant {

// x_max_abs: per input channel, the largest |x| over the calibration tokens; mats: the matrices
// reading that input (their column maxima are taken together). Scales are at least 1e-5, and
// channels never active (or whose weights are all zero) keep s = 1.
std::vector<float> smoothquant_scales(std::span<const double> x_max_abs, std::span<const AwqMatrix> mats, int64_t n,
                                      double alpha);

}  // namespace tern::quant
