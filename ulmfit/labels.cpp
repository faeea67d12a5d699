#include "ulmfit/labels.h"

#include <algorithm>
#include <cmath>

namespace ulmfit {

std::array<float, 3> temperature_scores(const std::array<float, 3>& p, float temperature) {
  std::array<float, 3> s{};
  float m = *std::max_element(p.begin(), p.end()) / temperature;
  float z = 0;
  for (int i = 0; i < 3; ++i) {
    s[i] = std::exp(p[i] / temperature - m);
    z += s[i];
  }
  for (auto& x : s) x /= z;
  return s;
}

}  // namespace ulmfit
