// nn/int8.h — int8 weights with one float scale per row, for the serving path's recurrent
// weights (the batch-1 LSTM step is a GEMV that streams all of W_hh from memory at every token:
// a quarter of float32's bytes, half of fp16's).
#pragma once

#include <cstdint>
#include <vector>

#include "nn/panels.h"
#include "nn/tensor.h"

namespace nn {

// Symmetric per-row quantization: row r holds q[r, k] in [-127, 127] and scale[r] =
// max_k |W[r, k]| / 127, so W[r, k] ≈ scale[r] · q[r, k] with an error of at most scale[r] / 2
// (round to nearest; an all-zero row has scale 0). Only the weights are quantized: the GEMV
// multiplies them with the float activations and accumulates in float.
//
// Two layouts of `q`, as nn::HalfMatrix: row-major [rows, cols], or, after to_panels(), panels of
// 16 rows stored column by column ([cols][16], rows past `rows` zero) for the serving GEMV
// (kernels::int8_gemv_acc). `scale` is per row in both.
struct Int8Matrix {
  std::vector<std::int8_t> q;  // row-major [rows, cols], or panels (above)
  std::vector<float> scale;    // [rows]
  Index rows = 0, cols = 0;
  bool panels = false;
  // m must be 2-D and finite (std::invalid_argument otherwise, naming the first bad element).
  static Int8Matrix from(CView<float> m);
  // Row r of m quantized into this matrix (rows/cols already set, q and scale sized, row-major):
  // for building one row block at a time from a mapped file.
  void quantize_rows(const float* m, Index r0, Index r1);
  std::int8_t qat(Index r, Index c) const {
    return panels ? q[panel_index(r, c, cols)] : q[r * cols + c];
  }
  float at(Index r, Index c) const { return scale[r] * qat(r, c); }
  void to_panels();  // row-major -> panels (no-op when already)
};

// An Int8Matrix laid out for int8 × uint8 products (x86 AVX512-VNNI `vpdpbusd`: each 32-bit lane
// sums 4 products of an unsigned activation byte and a signed weight byte), the serving path's
// "w8a8" mode (kernels::int8_gemm_u8_acc). The matrix's rows (the outputs) are taken in groups of
// `group` rows (an LSTM's gate blocks: group = H), each group padded to a multiple of 16 rows, so
// that every group starts a 16-row block; the columns (K) are padded with zeros to a multiple of 4.
//   b[((n / 16) · kp/4 + k / 4) · 64 + (n % 16) · 4 + k % 4] = q[row(n), k]   (64 bytes per
//   16 rows × 4 columns: one 512-bit load)
// where n is a packed row: group g, row i of it is packed row g · group_padded + i. Padding rows
// and columns are zero, so they add nothing.
struct Int8Packed {
  std::vector<std::int8_t> b;
  std::vector<std::int32_t> wsum;  // [packed rows] Σ_k q[row, k] (the zero point's correction)
  std::vector<float> scale;        // [packed rows] the rows' scales (0 in padding)
  Index rows = 0, cols = 0, group = 0, group_padded = 0, kp = 0;
  Index packed_rows() const { return (rows / group) * group_padded; }
  // Packed row of row r of the matrix.
  Index packed_row(Index r) const { return (r / group) * group_padded + r % group; }
  // group must divide m.rows (std::invalid_argument otherwise); m row-major.
  static Int8Packed from(const Int8Matrix& m, Index group);
};

}  // namespace nn
