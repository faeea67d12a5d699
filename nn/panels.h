// nn/panels.h — the 16-row panel layout of the serving GEMVs' weights (nn::HalfMatrix,
// nn::Int8Matrix; kernels in nn/gemm_kernels.cpp): panel p holds rows 16p..16p+15 column by
// column ([cols][16]), rows past the matrix's end zero.
#pragma once

#include <vector>

#include "nn/tensor.h"

namespace nn {

constexpr Index kPanelRows = 16;

// Where element [r, c] of a [·, cols] matrix sits in the panel layout.
inline Index panel_index(Index r, Index c, Index cols) {
  return (r / kPanelRows) * kPanelRows * cols + c * kPanelRows + r % kPanelRows;
}

// Elements a panel-layout [rows, cols] matrix holds (rows padded to a multiple of 16).
inline Index panel_size(Index rows, Index cols) {
  return (rows + kPanelRows - 1) / kPanelRows * kPanelRows * cols;
}

// A row-major [rows, cols] matrix re-laid in panels.
template <typename T>
std::vector<T> to_panel_layout(const std::vector<T>& row_major, Index rows, Index cols) {
  std::vector<T> out(static_cast<std::size_t>(panel_size(rows, cols)), T(0));
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) out[panel_index(r, c, cols)] = row_major[r * cols + c];
  return out;
}

}  // namespace nn
