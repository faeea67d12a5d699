// nn/int8.h — int8 weights with one float scale per row, for the serving path's recurrent
// weights (the batch-1 LSTM step is a GEMV that streams all of W_hh from memory at every token:
// a quarter of float32's bytes, half of fp16's).
#pragma once

#include <cstdint>
#include <vector>

#include "nn/tensor.h"

namespace nn {

// Symmetric per-row quantization: row r holds q[r, k] in [-127, 127] and scale[r] =
// max_k |W[r, k]| / 127, so W[r, k] ≈ scale[r] · q[r, k] with an error of at most scale[r] / 2
// (round to nearest; an all-zero row has scale 0). Only the weights are quantized: the GEMV
// multiplies them with the float activations and accumulates in float.
struct Int8Matrix {
  std::vector<std::int8_t> q;  // row-major [rows, cols]
  std::vector<float> scale;    // [rows]
  Index rows = 0, cols = 0;
  // m must be 2-D and finite (std::invalid_argument otherwise, naming the first bad element).
  static Int8Matrix from(CView<float> m);
  // Row r of m quantized into this matrix (rows/cols already set, q and scale sized): for
  // building one row block at a time from a mapped file.
  void quantize_rows(const float* m, Index r0, Index r1);
  float at(Index r, Index c) const { return scale[r] * q[r * cols + c]; }
};

}  // namespace nn
