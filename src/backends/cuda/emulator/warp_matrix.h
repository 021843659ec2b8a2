// The warp-wide matrix instructions of kernels/tensor_core.cuh on the emulator: ldmatrix (x4, and
// transposed) and mma.m16n8k16 (f16 in, f32 accumulate), with the fragment layouts of the PTX ISA
// ("Matrix Fragments for mma.m16n8k16", "ldmatrix"). Every lane of the warp calls them together,
// as on the device. The products' sum runs over k in order (the tensor cores' order is their own:
// results agree to f32 rounding, not bit for bit).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

#include "backends/cuda/emulator/emulator.h"

namespace tern::cuda::emu {

inline uint16_t half_bits_at(const uint8_t* row, int col) {
  uint16_t v;
  std::memcpy(&v, row + 2 * col, 2);
  return v;
}

// Lanes 8i .. 8i + 7 give the rows of 8x8 matrix i (16 bytes each); lane l receives, of each
// matrix, row l / 4 at columns 2 (l % 4) and + 1 (transposed: rows 2 (l % 4) and + 1 at column l / 4).
inline void ldmatrix_x4(uint32_t (&r)[4], const void* row, bool trans) {
  const uint8_t* slots = warp_gather(&row, sizeof row);
  const auto row_of = [&](int lane) {
    const uint8_t* p;
    std::memcpy(&p, slots + lane * kSlotBytes, sizeof p);
    return p;
  };
  const int l = static_cast<int>(self().lane), g = l / 4, t = l % 4;
  for (int i = 0; i < 4; ++i) {
    uint16_t lo, hi;
    if (!trans) {
      lo = half_bits_at(row_of(8 * i + g), 2 * t);
      hi = half_bits_at(row_of(8 * i + g), 2 * t + 1);
    } else {
      lo = half_bits_at(row_of(8 * i + 2 * t), g);
      hi = half_bits_at(row_of(8 * i + 2 * t + 1), g);
    }
    r[i] = static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16;
  }
}

// c += a b for the warp's m16n8k16 tile: a (16 x 16, row-major fragments), b (16 x 8, column-major).
inline void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  struct Frag {
    uint32_t a[4], b[2];
  } mine{{a[0], a[1], a[2], a[3]}, {b0, b1}};
  const uint8_t* slots = warp_gather(&mine, sizeof mine);
  float A[16][16], B[16][8];
  const auto half_of = [](uint32_t v, int hi) { return __half2float(__ushort_as_half(static_cast<unsigned short>(v >> (16 * hi)))); };
  for (int lane = 0; lane < 32; ++lane) {
    Frag f;
    std::memcpy(&f, slots + lane * kSlotBytes, sizeof f);
    const int g = lane / 4, t = lane % 4;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = half_of(f.a[0], h);
      A[g + 8][2 * t + h] = half_of(f.a[1], h);
      A[g][2 * t + 8 + h] = half_of(f.a[2], h);
      A[g + 8][2 * t + 8 + h] = half_of(f.a[3], h);
      B[2 * t + h][g] = half_of(f.b[0], h);
      B[2 * t + 8 + h][g] = half_of(f.b[1], h);
    }
  }
  const int l = static_cast<int>(self().lane), g = l / 4, t = l % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
    float s = 0.0f;
    for (int k = 0; k < 16; ++k) s += A[row][k] * B[k][col];
    c[e] += s;
  }
}

// wgmma.mma_async m64nNk16 (f16 in, f32 accumulate) for the 128 threads of a warpgroup: A (64 x 16)
// from registers, warp w holding rows 16 w .. 16 w + 15 as an m16n8k16 A fragment; B (16 x N) from
// shared memory through a descriptor without swizzling (kernels/wgmma.cuh): core matrices of 8 x 8
// halves, 128 contiguous bytes, LBO apart along K and SBO apart along N; inside one, 16-byte rows
// along N (K-major, trans_b false) or along K (MN-major, trans_b true). d[t] = columns 8 t .. 8 t + 7
// of rows g and g + 8 of the warp's 16, as mma.m16n8. accumulate false: d = A B.
// This is the layout wgmma.cuh builds its descriptors for; whether the tensor cores read it so is
// what bench/gpu/wgmma_probe.cu checks on a GPU.
template <int N>
void wgmma_m64k16(float (&d)[N][4], const uint32_t (&a)[4], uint64_t desc, bool accumulate, bool trans_b) {
  struct Frag {
    uint32_t a[4];
  } mine{{a[0], a[1], a[2], a[3]}};
  const uint8_t* slots = warpgroup_gather(&mine, sizeof mine);
  const auto half_of = [](uint32_t v, int hi) { return __half2float(__ushort_as_half(static_cast<unsigned short>(v >> (16 * hi)))); };
  float A[64][16];
  for (int t = 0; t < 128; ++t) {
    Frag f;
    std::memcpy(&f, slots + t * kSlotBytes, sizeof f);
    const int w = t / 32, g = (t % 32) / 4, tig = t % 4;
    for (int h = 0; h < 2; ++h) {
      A[16 * w + g][2 * tig + h] = half_of(f.a[0], h);
      A[16 * w + g + 8][2 * tig + h] = half_of(f.a[1], h);
      A[16 * w + g][2 * tig + 8 + h] = half_of(f.a[2], h);
      A[16 * w + g + 8][2 * tig + 8 + h] = half_of(f.a[3], h);
    }
  }
  const uint8_t* start = static_cast<const uint8_t*>(dynamic_smem()) + ((desc & 0x3FFF) << 4);
  const size_t lbo = ((desc >> 16) & 0x3FFF) << 4, sbo = ((desc >> 32) & 0x3FFF) << 4;
  const auto b_at = [&](int k, int n) {
    const size_t inner = trans_b ? (k % 8) * 16 + (n % 8) * 2 : (n % 8) * 16 + (k % 8) * 2;
    return __half2float(__ushort_as_half(half_bits_at(start + (k / 8) * lbo + (n / 8) * sbo + inner, 0)));
  };
  const int self_t = static_cast<int>(self().warp % 4) * 32 + static_cast<int>(self().lane);
  const int w = self_t / 32, g = (self_t % 32) / 4, tig = self_t % 4;
  for (int t = 0; t < N; ++t)
    for (int e = 0; e < 4; ++e) {
      const int row = 16 * w + g + 8 * (e / 2), col = 8 * t + 2 * tig + e % 2;
      float s = 0.0f;
      for (int k = 0; k < 16; ++k) s += A[row][k] * b_at(k, col);
      d[t][e] = accumulate ? d[t][e] + s : s;
    }
}

}  // namespace tern::cuda::emu
