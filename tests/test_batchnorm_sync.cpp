// tests/test_batchnorm_sync.cpp — nn/batchnorm_sync.h: two "ranks" (threads with a shared sum)
// holding 4 + 3 rows of a batch of 7 compute what batchnorm_forward_train / batchnorm_backward
// compute on the whole batch (the data-parallel classifier relies on it; docs/distributed.md).
#include <gtest/gtest.h>

#include <barrier>
#include <cmath>
#include <mutex>
#include <thread>
#include <vector>

#include "nn/batchnorm.h"
#include "nn/batchnorm_sync.h"
#include "nn/rng.h"
#include "nn/tensor.h"

using nn::Index;
using nn::Shape;
using nn::Tensor;

namespace {

// An all-reduce (sum) between two threads: each adds its buffer into the shared one, waits,
// copies the total back, waits; the buffer is then emptied before either starts the next sum.
struct TwoPartySum {
  std::barrier<> sync{2};
  std::vector<double> acc;
  std::mutex mu;
  void operator()(double* d, std::size_t n) {
    {
      std::lock_guard<std::mutex> g(mu);
      if (acc.size() != n) acc.assign(n, 0.0);
      for (std::size_t i = 0; i < n; ++i) acc[i] += d[i];
    }
    sync.arrive_and_wait();
    for (std::size_t i = 0; i < n; ++i) d[i] = acc[i];
    sync.arrive_and_wait();
    {
      std::lock_guard<std::mutex> g(mu);
      acc.clear();  // both have read the total: ready for the next sum
    }
    sync.arrive_and_wait();
  }
};

Tensor<float> random(Shape s, nn::Rng& rng) {
  Tensor<float> t(s);
  for (Index i = 0; i < t.numel(); ++i) t[i] = (float)(rng.uniform() * 4.0 - 1.5);
  return t;
}

}  // namespace

TEST(BatchNormSync, TwoRanksEqualTheWholeBatch) {
  const Index N = 7, C = 5, rows[2] = {4, 3}, first[2] = {0, 4};
  nn::Rng rng(3);
  Tensor<float> x = random({N, C}, rng), dy = random({N, C}, rng);
  Tensor<float> w = random({C}, rng), b = random({C}, rng);
  // the whole batch
  Tensor<float> rm({C}), rv({C}), y({N, C}), xhat({N, C}), rstd({C}), dx({N, C}), dw({C}), db({C});
  nn::batchnorm_init<float>(nn::View<float>(), nn::View<float>(), rm.view(), rv.view());
  nn::batchnorm_forward_train<float>(x.view(), w.view(), b.view(), rm.view(), rv.view(), y.view(),
                                     {xhat.view(), rstd.view()});
  nn::batchnorm_backward<float>(dy.view(), w.view(), {xhat.view(), rstd.view()}, dx.view(),
                                dw.view(), db.view());
  // two ranks: rows [0, 4) and [4, 7); each rank's dy is its LOCAL loss's (÷ share)
  TwoPartySum sum;
  struct Rank {
    Tensor<float> x, dy, rm, rv, y, xhat, rstd, dx, dw, db;
  } rk[2];
  auto work = [&](int r) {
    Rank& k = rk[r];
    const double share = (double)rows[r] / (double)N;
    k.x = Tensor<float>({rows[r], C});
    k.dy = Tensor<float>({rows[r], C});
    for (Index i = 0; i < rows[r] * C; ++i) {
      k.x[i] = x[first[r] * C + i];
      k.dy[i] = (float)(dy[first[r] * C + i] / share);
    }
    k.rm = Tensor<float>({C}), k.rv = Tensor<float>({C});
    k.y = Tensor<float>({rows[r], C}), k.xhat = Tensor<float>({rows[r], C});
    k.rstd = Tensor<float>({C}), k.dx = Tensor<float>({rows[r], C});
    k.dw = Tensor<float>({C}), k.db = Tensor<float>({C});
    nn::batchnorm_init<float>(nn::View<float>(), nn::View<float>(), k.rm.view(), k.rv.view());
    auto fn = [&](double* d, std::size_t n) { sum(d, n); };
    nn::batchnorm_forward_train_sync<float>(k.x.view(), w.view(), b.view(), k.rm.view(), k.rv.view(),
                                            k.y.view(), {k.xhat.view(), k.rstd.view()}, fn, N);
    nn::batchnorm_backward_sync<float>(k.dy.view(), w.view(), {k.xhat.view(), k.rstd.view()},
                                       k.dx.view(), k.dw.view(), k.db.view(), fn, N, share);
  };
  std::thread t1(work, 1);
  work(0);
  t1.join();
  for (int r = 0; r < 2; ++r) {
    const double share = (double)rows[r] / (double)N;
    for (Index c = 0; c < C; ++c) {
      EXPECT_NEAR(rk[r].rm[c], rm[c], 1e-6) << r << " " << c;
      EXPECT_NEAR(rk[r].rv[c], rv[c], 1e-6) << r << " " << c;
    }
    for (Index i = 0; i < rows[r] * C; ++i) {
      EXPECT_NEAR(rk[r].y[i], y[first[r] * C + i], 1e-5) << r << " " << i;
      // dx at the local scale: × share gives the whole batch's
      EXPECT_NEAR(rk[r].dx[i] * share, dx[first[r] * C + i], 1e-5) << r << " " << i;
    }
  }
  // parameter gradients: the share-weighted sum over the ranks (what the all-reduce forms)
  for (Index c = 0; c < C; ++c) {
    const double s0 = 4.0 / 7, s1 = 3.0 / 7;
    EXPECT_NEAR(s0 * rk[0].dw[c] + s1 * rk[1].dw[c], dw[c], 1e-5) << c;
    EXPECT_NEAR(s0 * rk[0].db[c] + s1 * rk[1].db[c], db[c], 1e-5) << c;
  }
}

TEST(BatchNormSync, RejectsABadGlobalBatch) {
  Tensor<float> x({3, 2}), w({2}), b({2}), rm({2}), rv({2}), y({3, 2}), xhat({3, 2}), rstd({2});
  auto none = [](double*, std::size_t) {};
  EXPECT_THROW(nn::batchnorm_forward_train_sync<float>(x.view(), w.view(), b.view(), rm.view(),
                                                       rv.view(), y.view(), {xhat.view(), rstd.view()},
                                                       none, 2),
               std::invalid_argument);  // fewer global rows than this rank's
}
