// tests/backend_test_helpers.h — a test backend that is the CPU backend in all but what a
// subclass overrides (its ops to count them, its memory to be a Placement of its own, ...).
#pragma once

#include "nn/backend.h"

class CpuForwardingBackend : public nn::Backend {
 public:
  nn::Memory memory() const override { return nn::Memory::host; }
  nn::Buffer alloc(std::size_t b) override { return nn::cpu_backend().alloc(b); }
  void copy_from_host(nn::Buffer& d, std::size_t o, const void* s, std::size_t b) override {
    nn::cpu_backend().copy_from_host(d, o, s, b);
  }
  void copy_to_host(void* d, const nn::Buffer& s, std::size_t o, std::size_t b) override {
    nn::cpu_backend().copy_to_host(d, s, o, b);
  }
  void copy(nn::Buffer& d, std::size_t od, const nn::Buffer& s, std::size_t os, std::size_t b) override {
    nn::cpu_backend().copy(d, od, s, os, b);
  }
  nn::Ops<float>& f32() override { return nn::cpu_backend().f32(); }
  nn::Ops<double>& f64() override { return nn::cpu_backend().f64(); }
};
