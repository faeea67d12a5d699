// tests/golden_json.h — reading tensors from the JSON golden fixtures written by
// tools/reference/*.py ({"shape": [...], "data": [...]}) and comparing against them.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "nn/tensor.h"

namespace golden_json {

template <typename T>
nn::Tensor<T> from_json(const nlohmann::json& j) {
  nn::Shape s;
  for (auto& d : j.at("shape")) s.d[s.ndim++] = d.get<nn::Index>();
  nn::Tensor<T> t(s);
  auto& data = j.at("data");
  EXPECT_EQ((nn::Index)data.size(), t.numel());
  for (nn::Index i = 0; i < t.numel(); ++i) t[i] = (T)data[i].get<double>();
  return t;
}

// max |a-b| / (max|b| + tiny): the error relative to the reference tensor's scale.
template <typename T>
double rel_err(nn::CView<T> a, nn::CView<double> b) {
  double m = 0, scale = 1e-30;
  EXPECT_EQ(a.numel(), b.numel());
  for (nn::Index i = 0; i < b.numel(); ++i) scale = std::max(scale, std::fabs(b[i]));
  for (nn::Index i = 0; i < b.numel(); ++i) m = std::max(m, std::fabs((double)a[i] - b[i]));
  return m / scale;
}

}  // namespace golden_json
