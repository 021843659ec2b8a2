// A check of the wgmma conventions the Hopper prefill kernel relies on (src/backends/cuda/kernels/
// wgmma.cuh), product by product, so that a failing FlashAttention test on a GPU says which part
// is wrong: S = Q K^T with K as a K-major operand in core matrices, and O = P V with V as an
// MN-major one, each against a double-precision product on the host. Prints one line per head size
// and returns whether both products matched (true without a Hopper GPU: nothing to check).
#pragma once

namespace tern::bench {

bool wgmma_probe(int d);

}  // namespace tern::bench
