// nn/half.h — IEEE 754 half precision (binary16) for the serving path's recurrent weights.
#pragma once

#include <cstdint>
#include <vector>

#include "nn/panels.h"
#include "nn/tensor.h"

namespace nn {

// A float matrix stored as IEEE 754 half precision (binary16, round to nearest even), for the
// serving path's recurrent weights: a single document's LSTM step is a GEMV that reads all of
// W_hh from memory, so halving its bytes nearly halves that time. Values keep 11 significant
// bits (relative error <= 2^-11); LSTM weights are far inside fp16's range.
//
// Two layouts of `data`: row-major [rows, cols] (as `from` makes it), or, after to_panels(),
// panels of 16 rows: panel p holds rows 16p..16p+15 column by column ([cols][16], rows past
// `rows` zero), so a GEMV reads each panel as one contiguous stream and keeps 16 rows' sums in one
// vector register, with no horizontal sums (nn/gemm_kernels.h half_gemv_acc). The serving path
// keeps W_hh in panels.
struct HalfMatrix {
  std::vector<std::uint16_t> data;  // row-major [rows, cols], or panels (above)
  Index rows = 0, cols = 0;
  bool panels = false;
  static HalfMatrix from(CView<float> m);  // m must be 2-D; row-major
  float at(Index r, Index c) const;        // either layout
  void to_panels();                        // row-major -> panels (no-op when already)
};
std::uint16_t float_to_half(float f);  // round to nearest even; overflow -> inf, NaN kept
float half_to_float(std::uint16_t h);
void floats_to_half(const float* src, std::uint16_t* dst, Index n);  // vectorised (F16C) where possible

}  // namespace nn
