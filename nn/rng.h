// nn/rng.h — a small, fast, seedable RNG (xoshiro256**) whose whole state can be saved and
// restored, so that a resumed training run draws exactly the same dropout masks and shuffles.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace nn {

class Rng {
 public:
  using State = std::array<std::uint64_t, 4>;

  explicit Rng(std::uint64_t seed = 42) { seed_with(seed); }

  void seed_with(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (auto& w : s_) w = splitmix64(x);
  }
  const State& state() const { return s_; }
  void set_state(const State& s) { s_ = s; }

  std::uint64_t next_u64() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return (next_u64() >> 11) * 0x1.0p-53; }
  // Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), n > 0 (Lemire's nearly-divisionless method, unbiased).
  std::uint64_t below(std::uint64_t n) {
    __uint128_t m = (__uint128_t)next_u64() * n;
    std::uint64_t l = (std::uint64_t)m;
    if (l < n) {
      std::uint64_t t = -n % n;
      while (l < t) {
        m = (__uint128_t)next_u64() * n;
        l = (std::uint64_t)m;
      }
    }
    return (std::uint64_t)(m >> 64);
  }
  bool bernoulli(double p_true) { return uniform() < p_true; }
  // Fisher–Yates shuffle of any random-access range.
  template <typename It>
  void shuffle(It first, It last) {
    auto n = last - first;
    for (decltype(n) i = n - 1; i > 0; --i) {
      auto j = (decltype(n))below((std::uint64_t)i + 1);
      std::swap(first[i], first[j]);
    }
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  State s_{};
};

}  // namespace nn
