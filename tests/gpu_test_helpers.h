// tests/gpu_test_helpers.h — for the tests that need a GPU (the `cuda` label): the CUDA backend
// where one is usable, and a skip (GTEST_SKIP) elsewhere, so that every build runs them.
#pragma once

#include <gtest/gtest.h>

#include <stdexcept>

#include "nn/backend.h"

// The CUDA backend, or nullptr (a build without -DINSPIRE_CUDA=ON, or no usable device).
inline nn::Backend* usable_gpu() {
  for (const auto& n : nn::available_backends())
    if (n == "cuda") try {
        return &nn::get_backend("cuda");
      } catch (const std::runtime_error&) {
        return nullptr;
      }
  return nullptr;
}

// In a test body: `nn::Backend& be` is the GPU backend, or the test is skipped.
#define NEED_GPU_BACKEND()                                                                     \
  nn::Backend* be_ptr = usable_gpu();                                                          \
  if (!be_ptr) GTEST_SKIP() << "no usable CUDA device (or a build without -DINSPIRE_CUDA=ON)"; \
  nn::Backend& be = *be_ptr
