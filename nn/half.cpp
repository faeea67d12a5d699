// nn/half.cpp — float <-> IEEE 754 half conversions (see nn/half.h).
#include "nn/half.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include <bit>
#include <cmath>
#include <stdexcept>

namespace nn {

std::uint16_t float_to_half(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u)  // inf or NaN (NaN keeps a quiet payload bit)
    return static_cast<std::uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (ax < 0x38800000u) {  // below 2^-14: subnormal half (or zero)
    // value = ax_float; half subnormal unit = 2^-24. Round to nearest even in float arithmetic
    // (exact: the product is a float with enough bits, and nearbyint rounds ties to even).
    float v = std::bit_cast<float>(ax) * 16777216.0f;  // / 2^-24
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(std::nearbyint(v)));
  }
  // normal: rebias the exponent (127 -> 15) and round the 23-bit mantissa to 10 bits
  std::uint32_t m = ax - 0x38000000u;  // exponent - 112
  const std::uint32_t lsb = (m >> 13) & 1u;
  m += 0xfffu + lsb;                   // round to nearest, ties to even
  return static_cast<std::uint16_t>(sign | (m >> 13));
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {  // zero or subnormal: m · 2^-24
    float v = static_cast<float>(m) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
  return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

void floats_to_half(const float* src, std::uint16_t* dst, Index n) {
  Index i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; ++i) dst[i] = float_to_half(src[i]);
}

HalfMatrix HalfMatrix::from(CView<float> m) {
  if (m.ndim() != 2) throw std::invalid_argument("HalfMatrix: expected a 2-D matrix, got " + m.shape.str());
  HalfMatrix h;
  h.rows = m.dim(0);
  h.cols = m.dim(1);
  h.data.resize(static_cast<std::size_t>(m.numel()));
  floats_to_half(m.data, h.data.data(), m.numel());
  return h;
}

float HalfMatrix::at(Index r, Index c) const {
  return half_to_float(data[panels ? panel_index(r, c, cols) : r * cols + c]);
}

void HalfMatrix::to_panels() {
  if (panels) return;
  data = to_panel_layout(data, rows, cols);
  panels = true;
}

}  // namespace nn
