// nn/int8.cpp — per-row int8 quantization (see nn/int8.h).
#include "nn/int8.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace nn {

void Int8Matrix::quantize_rows(const float* m, Index r0, Index r1) {
  if (panels) throw std::logic_error("Int8Matrix::quantize_rows: the matrix is in panels");
  for (Index r = r0; r < r1; ++r) {
    const float* w = m + (r - r0) * cols;
    float amax = 0;
    for (Index k = 0; k < cols; ++k) {
      if (!std::isfinite(w[k]))
        throw std::invalid_argument("Int8Matrix: element [" + std::to_string(r) + ", " +
                                    std::to_string(k) + "] is not finite");
      amax = std::max(amax, std::fabs(w[k]));
    }
    const float s = amax / 127.0f;
    scale[r] = s;
    std::int8_t* out = q.data() + r * cols;
    if (s == 0.0f) {
      std::fill_n(out, cols, std::int8_t(0));
      continue;
    }
    const float inv = 127.0f / amax;
    for (Index k = 0; k < cols; ++k) {
      const float v = std::nearbyint(w[k] * inv);
      out[k] = static_cast<std::int8_t>(std::max(-127.0f, std::min(127.0f, v)));
    }
  }
}

Int8Matrix Int8Matrix::from(CView<float> m) {
  if (m.ndim() != 2) throw std::invalid_argument("Int8Matrix: expected a 2-D matrix, got " + m.shape.str());
  Int8Matrix x;
  x.rows = m.dim(0);
  x.cols = m.dim(1);
  x.q.resize(static_cast<std::size_t>(m.numel()));
  x.scale.resize(static_cast<std::size_t>(x.rows));
  x.quantize_rows(m.data, 0, x.rows);
  return x;
}

void Int8Matrix::to_panels() {
  if (panels) return;
  q = to_panel_layout(q, rows, cols);
  panels = true;
}

Int8Packed Int8Packed::from(const Int8Matrix& m, Index group) {
  if (m.panels) throw std::logic_error("Int8Packed: the matrix is in panels, not row-major");
  if (group <= 0 || m.rows % group != 0)
    throw std::invalid_argument("Int8Packed: " + std::to_string(m.rows) +
                                " rows do not split into groups of " + std::to_string(group));
  Int8Packed p;
  p.rows = m.rows;
  p.cols = m.cols;
  p.group = group;
  p.group_padded = (group + 15) / 16 * 16;
  p.kp = (m.cols + 3) / 4 * 4;
  const Index np = p.packed_rows(), k4 = p.kp / 4;
  p.b.assign(static_cast<std::size_t>(np * p.kp), 0);
  p.wsum.assign(static_cast<std::size_t>(np), 0);
  p.scale.assign(static_cast<std::size_t>(np), 0.0f);
  for (Index r = 0; r < m.rows; ++r) {
    const Index n = p.packed_row(r);
    const std::int8_t* src = m.q.data() + r * m.cols;
    std::int8_t* blk = p.b.data() + (n / 16) * k4 * 64 + (n % 16) * 4;
    std::int32_t s = 0;
    for (Index k = 0; k < m.cols; ++k) {
      blk[(k / 4) * 64 + k % 4] = src[k];
      s += src[k];
    }
    p.wsum[n] = s;
    p.scale[n] = m.scale[r];
  }
  return p;
}

}  // namespace nn
