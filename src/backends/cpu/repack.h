// Weight layouts the CPU backend repacks at load (Backend::prepare_weight), and the way back.
//
// Q4_0 in groups of eight rows (kLayoutQ4_0x8): per group, per 32-element block, the eight rows'
// f16 scales, then four 32-byte chunk pairs; in pair k, row r owns bytes 4r..4r+3, whose low nibbles
// are its elements 4k..4k+3 and high nibbles its elements 4(k+4)..4(k+4)+3. One 32-byte load then
// holds four elements of each of the eight rows, so a single int8 multiply-add lane per row does the
// block's dot product (decode reads 8 rows with a quarter of the instructions of row-major blocks).
// Same bytes as the file's layout (8 x 18 per block).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tern::cpu {

inline constexpr uint8_t kLayoutQ4_0x8 = 1;
inline constexpr int64_t kQ4_0x8Block = 144;  // bytes of one block of a group

// Q4_K in groups of eight rows (kLayoutQ4_Kx8): per group, per 256-element super-block, the rows'
// f16 d[8] and dmin[8], their 12-byte scale fields as byte planes (byte 32 + 8p + r: row r's byte p;
// the kernels unpack all 64 scales and 64 mins at once, qk_x8_row_scales one row's), then each
// 32-element sub-block's levels as Q4_0x8 lays out a block. Same bytes as the file's layout
// (8 x 144 = 1152 per super-block): an earlier layout kept the scales unpacked to bytes (1184), and
// decode, which streams every weight byte once, paid the 2.8% extra in time.
inline constexpr uint8_t kLayoutQ4_Kx8 = 2;
inline constexpr int64_t kQ4_Kx8Block = 1152;
inline constexpr int64_t kQKx8Units = 128;  // offset of the first sub-block's levels (Q4_K, Q5_K)

// Q5_K in groups of eight rows (kLayoutQ5_Kx8): as Q4_Kx8, each sub-block's 128 bytes of low four
// bits followed by 32 bytes of fifth bits: byte 4r + i holds at bit k that of row r's element
// 4k + i of the sub-block (k < 8). Same bytes as the file's layout (8 x 176 = 1408).
inline constexpr uint8_t kLayoutQ5_Kx8 = 6;
inline constexpr int64_t kQ5_Kx8Block = 1408;

// Row r's 12-byte scale field (quant/k_scales.h) from a Q4_Kx8/Q5_Kx8 super-block's planes
// (planes: the super-block's byte 32).
inline void qk_x8_row_scales(const uint8_t* planes, int r, uint8_t (&field)[12]) {
  for (int p = 0; p < 12; ++p) field[p] = planes[8 * p + r];
}

// Q8_0 in groups of eight rows (kLayoutQ8_0x8): per group, per block, the rows' f16 scales, then
// eight 32-byte chunks; in chunk k, row r owns bytes 4r..4r+3, its elements 4k..4k+3. Same bytes
// as the file's layout (8 x 34 per block).
inline constexpr uint8_t kLayoutQ8_0x8 = 3;
inline constexpr int64_t kQ8_0x8Block = 272;

// Q4_1 in groups of eight rows (kLayoutQ4_1x8): per group, per block, the rows' f16 scales d[8],
// their f16 mins m[8], then the levels exactly as Q4_0x8 lays them out. Same bytes as the file's
// layout (8 x 20 per block).
inline constexpr uint8_t kLayoutQ4_1x8 = 4;
inline constexpr int64_t kQ4_1x8Block = 160;

// Q6_K in groups of eight rows (kLayoutQ6_Kx8): per group, per 256-element super-block, the rows'
// f16 d[8], their int8 scales sc[sub-block][row] (16 sub-blocks of 16), then eight 192-byte units
// of 32 elements. In unit j, bytes 32k + 4r + i (k < 4) hold the low four bits of row r's elements
// 32j + 4k + i (low nibble) and 32j + 4(k + 4) + i (high nibble), as Q4_0x8 lays out a block; bytes
// 128 + 32h + 4r + i hold the top two bits of row r's elements 32j + 4(4h + c) + i at bits 2c, 2c + 1
// (c < 4). One 32-byte load then gives four 6-bit elements of every row with two masks and a shift.
// Same bytes as the file's layout (8 x 210 per super-block).
inline constexpr uint8_t kLayoutQ6_Kx8 = 5;
inline constexpr int64_t kQ6_Kx8Block = 1680;

// Q3_K in groups of eight rows (kLayoutQ3_Kx8): as Q6_Kx8 (d[8], then the scales unpacked to int8,
// minus 32), with 96-byte units: bytes 32v + 4r + i hold the two low bits of row r's elements
// 32j + 4(4v + c) + i at bits 2c, 2c + 1 (v < 2, c < 4); bytes 64 + 4r + i the third bit of its
// element 32j + 4k + i at bit k (k < 8). 912 bytes per super-block of eight rows (8 x 110 = 880).
inline constexpr uint8_t kLayoutQ3_Kx8 = 7;
inline constexpr int64_t kQ3_Kx8Block = 912;

// Q2_K in groups of eight rows (kLayoutQ2_Kx8): per group, per super-block, the rows' f16 d[8] and
// dmin[8], their scale bytes as in the file (scale | min << 4) sm[sub-block][row], then eight
// 64-byte units laid out as Q3_Kx8's first 64 bytes (the two bits of every level). Same bytes as
// the file's layout (8 x 84 per super-block).
inline constexpr uint8_t kLayoutQ2_Kx8 = 8;
inline constexpr int64_t kQ2_Kx8Block = 672;

// Row r's level of element 4k + i (k < 8, i < 4) of a 32-element unit of the K-quant layouts above
// (unit: the unit's first byte), unsigned as stored: for the repack's way back and the generic
// kernels, which read the layouts one level at a time.
// Q2_K, and the two low bits of Q3_K: bytes 32(k / 4) + 4r + i at bits 2(k % 4).
inline int low2_x8_level(const uint8_t* unit, int r, int k, int i) {
  return (unit[32 * (k / 4) + 4 * r + i] >> (2 * (k % 4))) & 3;
}
inline int q3_k_x8_level(const uint8_t* unit, int r, int k, int i) {
  return low2_x8_level(unit, r, k, i) | ((unit[64 + 4 * r + i] >> k) & 1) << 2;
}
// Q4_K (kFifth false) and Q5_K: the nibble at byte 32(k % 4) + 4r + i, Q5_K's fifth bit at bit k of
// byte 128 + 4r + i.
template <bool kFifth>
inline int qk_x8_level(const uint8_t* unit, int r, int k, int i) {
  const uint8_t nib = unit[32 * (k % 4) + 4 * r + i];
  const int fifth = kFifth ? ((unit[128 + 4 * r + i] >> k) & 1) << 4 : 0;
  return ((k < 4 ? nib : nib >> 4) & 0x0F) | fifth;
}
inline int q6_k_x8_level(const uint8_t* unit, int r, int k, int i) {
  return qk_x8_level<false>(unit, r, k, i) | ((unit[128 + 32 * (k / 4) + 4 * r + i] >> (2 * (k % 4))) & 3) << 4;
}

// Rows [0, n_rows) (n_rows a multiple of 8) of n elements each, row_bytes apart -> dst.
void repack_q4_0_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst);
// One group back to eight row-major Q4_0 rows of n elements, row_bytes apart.
void unpack_q4_0_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes);
void repack_q4_1_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst);
void unpack_q4_1_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes);
void repack_q8_0_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst);
void unpack_q8_0_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes);
void repack_q4_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst);
void unpack_q4_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes);
void repack_q5_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst);
void unpack_q5_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes);
void repack_q2_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst);
void unpack_q2_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes);
void repack_q3_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst);
void unpack_q3_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes);
void repack_q6_k_x8(const uint8_t* src, size_t row_bytes, int64_t n_rows, int64_t n, uint8_t* dst);
void unpack_q6_k_x8(const uint8_t* group, int64_t n, uint8_t* rows, size_t row_bytes);

}  // namespace tern::cpu
