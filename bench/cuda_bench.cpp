// bench/cuda_bench.cpp — our side of tools/device-check.sh: the full-size AWD-LSTM on the CUDA
// backend, composed from the ops of nn/ops.h on device memory (built only with -DINSPIRE_CUDA=ON).
//
//   lm       LM training step at batch 64 x BPTT 70 (vocab 60000, 400/1152/3, tied decoder):
//            dropout masks (embedding, input, hidden, weight-drop, output), 3 LSTM layers
//            forward + backward, fused softmax-CE over the vocabulary in row chunks, embedding
//            scatter-add, grad-norm clipping, one Adam step over the flat parameter arena
//   latency  one 250-token document: embedding, 3 x lstm_infer, concat pooling, the classifier
//            head (BN, Linear, ReLU, BN, Linear), logits copied to the host
//   batch    documents/s with batches of 256 such documents
//
// fp32, or --precision tf32 (nn::set_cuda_tf32: TF32 GEMMs); bf16 is not implemented.
// Prints one JSON object per measurement, keys as tools/reference/bench_awd_lstm_torch.py. This is an op-level composition, not the
// ulmfit/ models (they cannot run on the CUDA backend yet); it measures the same arithmetic.
// NOT RUN ON A GPU YET (written without one, issue #16).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_backend.h"
#include "nn/backend.h"
#include "nn/optim.h"
#include "nn/rng.h"

using namespace nn;

namespace {

struct Args {
  std::string bench = "all";
  std::string precision = "fp32";  // fp32 | tf32 (cuBLAS TF32 tensor-op math for every GEMM)
  Index vocab = 60000, emb = 400, hid = 1152, layers = 3, bs = 64, bptt = 70, doc_len = 250,
        batch_docs = 256, chunk = 1024;
  double seconds = 10;
};

// A device arena: views carved from one Buffer (64-byte aligned).
struct DevArena {
  DevArena(Backend& be, std::size_t floats) : a(be.alloc(floats * sizeof(float) + (1 << 20))) {}
  BufferArena<float> a;
  View<float> take(Shape s) { return a.take(s); }
};

template <typename F>
double timed(double seconds, Backend& be, F step) {
  for (int i = 0; i < 2; ++i) step();
  be.synchronize();
  int n = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double el = 0;
  while (n < 3 || el < seconds) {
    step();
    ++n;
    be.synchronize();
    el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return el / n;
}

std::vector<std::int32_t> random_ids(Rng& r, Index n, Index V) {
  std::vector<std::int32_t> v(n);
  for (auto& x : v) x = (std::int32_t)(2 + r.below((std::uint64_t)(V - 2)));
  return v;
}

struct Layer {
  Index in, h;
  View<float> w_ih, w_hh_raw, b_ih, b_hh;  // parameters (in the flat arena)
  View<float> g_ih, g_hh_raw, g_bih, g_bhh;
  View<float> w_hh_eff, g_hh_eff, wmask;
};

}  // namespace

int run(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(k + " needs a value");
      return argv[++i];
    };
    if (k == "--bench") a.bench = val();
    else if (k == "--seconds") a.seconds = std::stod(val());
    else if (k == "--precision") a.precision = val();
    else if (k == "--bs") a.bs = std::stol(val());
    else if (k == "--bptt") a.bptt = std::stol(val());
    else if (k == "--vocab") a.vocab = std::stol(val());
    else if (k == "--help" || k == "-h") {
      std::puts("cuda_bench [--bench lm|latency|batch|all] [--precision fp32|tf32] [--seconds S] [--bs N] [--bptt N] [--vocab V]");
      return 0;
    } else {
      std::fprintf(stderr, "cuda_bench: unknown argument %s\n", k.c_str());
      return 2;
    }
  }
  if (a.precision != "fp32" && a.precision != "tf32") {
    std::fprintf(stderr, "cuda_bench: --precision %s: only fp32 and tf32 exist (bf16 is not implemented)\n",
                 a.precision.c_str());
    return 2;
  }
  Backend* bep = nullptr;
  try {
    bep = &get_backend("cuda");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_bench: %s\n", e.what());
    return 3;
  }
  Backend& be = *bep;
  set_cuda_tf32(a.precision == "tf32");
  Ops<float>& ops = be.f32();
  Rng rng(1);
  const Index V = a.vocab, E = a.emb, L = a.layers;

  // ---- parameters: embedding (tied decoder), LSTMs, decoder bias — one flat arena each for
  // weights, gradients and the two Adam moments ----
  std::vector<Index> ins, hs;
  for (Index l = 0; l < L; ++l) {
    ins.push_back(l == 0 ? E : a.hid);
    hs.push_back(l == L - 1 ? E : a.hid);
  }
  Index nparam = V * E + V;
  for (Index l = 0; l < L; ++l) nparam += 4 * hs[l] * (ins[l] + hs[l] + 2);
  auto arena_of = [&](Index n) { return DevArena(be, (std::size_t)n + 64 * (4 * L + 4)); };
  DevArena W = arena_of(nparam), G = arena_of(nparam), M = arena_of(nparam), Vv = arena_of(nparam);
  View<float> emb = W.take({V, E}), demb = G.take({V, E});
  std::vector<Layer> layers(L);
  for (Index l = 0; l < L; ++l) {
    Layer& y = layers[l];
    y.in = ins[l], y.h = hs[l];
    y.w_ih = W.take({4 * y.h, y.in}), y.g_ih = G.take({4 * y.h, y.in});
    y.w_hh_raw = W.take({4 * y.h, y.h}), y.g_hh_raw = G.take({4 * y.h, y.h});
    y.b_ih = W.take({4 * y.h}), y.g_bih = G.take({4 * y.h});
    y.b_hh = W.take({4 * y.h}), y.g_bhh = G.take({4 * y.h});
  }
  View<float> dec_b = W.take({V}), ddec_b = G.take({V});
  (void)M.take({W.a.all().numel()});
  (void)Vv.take({W.a.all().numel()});
  {  // random weights, uniform(-0.1, 0.1)
    std::vector<float> host(W.a.all().numel());
    for (auto& x : host) x = (float)rng.uniform(-0.1, 0.1);
    be.copy_from_host(const_cast<Buffer&>(W.a.buffer()), 0, host.data(), host.size() * sizeof(float));
  }
  std::size_t wfloats = 0;
  const Index N = a.bs * a.bptt;
  Index maxh = 0;
  for (Index l = 0; l < L; ++l) maxh = std::max(maxh, std::max(hs[l], ins[l]));
  wfloats += 2 * (std::size_t)N * E + (std::size_t)a.chunk * V + V;  // x0, hidden grads, workspace, emb mask
  for (Index l = 0; l < L; ++l)
    wfloats += 3 * (std::size_t)4 * hs[l] * hs[l] + 4 * (std::size_t)N * maxh + 4 * a.bs * maxh;
  DevArena Wk(be, wfloats * 2);
  View<float> emb_mask = Wk.take({V}), ws = Wk.take({a.chunk * V});
  View<float> x0 = Wk.take({a.bs, a.bptt, E}), dx0 = Wk.take({a.bs, a.bptt, E});
  std::vector<View<float>> xin(L + 1), dxin(L + 1), drop_out(L + 1), masks(L + 1), hst(L), cst(L);
  xin[0] = x0, dxin[0] = dx0;
  for (Index l = 0; l < L; ++l) {
    Layer& y = layers[l];
    y.w_hh_eff = Wk.take({4 * y.h, y.h});
    y.g_hh_eff = Wk.take({4 * y.h, y.h});
    y.wmask = Wk.take({4 * y.h, y.h});
    masks[l] = Wk.take({a.bs, y.in});
    drop_out[l] = Wk.take({a.bs, a.bptt, y.in});  // dropped input of layer l
    xin[l + 1] = Wk.take({a.bs, a.bptt, y.h});
    dxin[l + 1] = Wk.take({a.bs, a.bptt, y.h});
    hst[l] = Wk.take({a.bs, y.h});
    cst[l] = Wk.take({a.bs, y.h});
  }
  masks[L] = Wk.take({a.bs, E});
  drop_out[L] = Wk.take({a.bs, a.bptt, E});
  std::vector<LstmCache<float>> caches(L);
  // token ids and targets on the device
  Buffer ids_b = be.alloc(sizeof(std::int32_t) * N), tgt_b = be.alloc(sizeof(std::int32_t) * N);
  {
    auto ids = random_ids(rng, N, V), tg = random_ids(rng, N, V);
    be.copy_from_host(ids_b, 0, ids.data(), ids.size() * 4);
    be.copy_from_host(tgt_b, 0, tg.data(), tg.size() * 4);
  }
  View<std::int32_t> ids = ids_b.view<std::int32_t>({a.bs, a.bptt}), tgt = tgt_b.view<std::int32_t>({N});
  Buffer zero = be.alloc(G.a.all().numel() * sizeof(float));
  AdamHyper hyper;
  hyper.wd = 0.01;
  std::int64_t step_no = 0;
  const double mult = 0.7;

  auto lm_step = [&]() {
    be.copy(const_cast<Buffer&>(G.a.buffer()), 0, zero, 0, G.a.all().numel() * sizeof(float));
    ops.dropout_mask(rng, 0.02 * mult, emb_mask);
    ops.embedding_forward(ids, emb, emb_mask, x0);
    for (Index l = 0; l < L; ++l) {
      Layer& y = layers[l];
      ops.dropout_mask(rng, (l == 0 ? 0.25 : 0.15) * mult, masks[l]);
      ops.rnn_dropout_forward(xin[l], masks[l], drop_out[l]);
      ops.dropout_mask(rng, 0.2 * mult, y.wmask);
      ops.weight_dropout_forward(y.w_hh_raw, y.wmask, y.w_hh_eff);
      LstmParams<float> p{y.w_ih, y.w_hh_eff, y.b_ih, y.b_hh};
      ops.lstm_forward(p, drop_out[l], hst[l], cst[l], xin[l + 1], hst[l], cst[l], caches[l]);
    }
    ops.dropout_mask(rng, 0.1 * mult, masks[L]);
    ops.rnn_dropout_forward(xin[L], masks[L], drop_out[L]);
    View<float> dhid = dxin[L];
    ops.lm_softmax_ce_forward_backward(drop_out[L].reshape({N, E}), emb, dec_b, tgt,
                                       dhid.reshape({N, E}), demb, ddec_b, ws, a.chunk, 1.f);
    ops.rnn_dropout_backward(dhid, masks[L], dhid);
    for (Index l = L - 1; l >= 0; --l) {
      Layer& y = layers[l];
      LstmParams<float> p{y.w_ih, y.w_hh_eff, y.b_ih, y.b_hh};
      be.copy(const_cast<Buffer&>(Wk.a.buffer()),
              (std::size_t)((char*)y.g_hh_eff.data - (char*)Wk.a.buffer().data()), zero, 0,
              y.g_hh_eff.numel() * sizeof(float));
      ops.lstm_backward(p, caches[l], dxin[l + 1], {}, {}, drop_out[l], {}, {},
                        LstmGrads<float>{y.g_ih, y.g_hh_eff, y.g_bih, y.g_bhh});
      ops.weight_dropout_backward(y.g_hh_eff, y.wmask, y.g_hh_raw);
      ops.rnn_dropout_backward(drop_out[l], masks[l], dxin[l]);
    }
    ops.embedding_backward(ids, emb_mask, dx0, 1, demb);
    ops.clip_grad_norm(G.a.all(), 0.1);
    ops.adam_step(W.a.all(), G.a.all(), M.a.all(), Vv.a.all(), adam_scalars(hyper, ++step_no, true));
  };

  auto print = [](const std::string& json) { std::printf("%s\n", json.c_str()), std::fflush(stdout); };
  if (a.bench == "lm" || a.bench == "all") {
    const double s = timed(a.seconds, be, lm_step);
    print("{\"impl\": \"ours\", \"bench\": \"lm\", \"precision\": \"" + a.precision + "\", \"bs\": " +
          std::to_string(a.bs) + ", \"bptt\": " + std::to_string(a.bptt) +
          ", \"step_ms\": " + std::to_string(s * 1e3) +
          ", \"tokens_per_s\": " + std::to_string((double)N / s) + "}");
  }

  // ---- inference: the classifier on documents of doc_len tokens ----
  auto classify_bench = [&](Index docs) {
    const Index T = a.doc_len, C = E, nh = 50, nc = 3;
    DevArena I(be, (std::size_t)docs * T * (3 * maxh + E) + 8 * docs * maxh + 8 * nh * 3 * C + 64 * 1024);
    View<float> x = I.take({docs, T, E});
    std::vector<View<float>> outs(L), h(L), c(L);
    for (Index l = 0; l < L; ++l) {
      outs[l] = I.take({docs, T, hs[l]});
      h[l] = I.take({docs, hs[l]});
      c[l] = I.take({docs, hs[l]});
    }
    View<float> pooled = I.take({docs, 3 * C}), w1 = I.take({nh, 3 * C}), b1 = I.take({nh});
    View<float> z1 = I.take({docs, nh}), w2 = I.take({nc, nh}), b2 = I.take({nc}), z2 = I.take({docs, nc});
    View<float> bn1w = I.take({3 * C}), bn1b = I.take({3 * C}), bn1m = I.take({3 * C}), bn1v = I.take({3 * C});
    View<float> bn2w = I.take({nh}), bn2b = I.take({nh}), bn2m = I.take({nh}), bn2v = I.take({nh});
    View<float> pooled2 = I.take({docs, 3 * C}), z1b = I.take({docs, nh});
    Buffer am_b = be.alloc(sizeof(std::int32_t) * docs * C), pad_b = be.alloc(docs * T);
    Buffer dids_b = be.alloc(sizeof(std::int32_t) * docs * T);
    {
      auto d = random_ids(rng, docs * T, V);
      be.copy_from_host(dids_b, 0, d.data(), d.size() * 4);
      std::vector<float> ones(3 * C, 1.f);  // BN weight and running var = 1
      for (View<float> v : {bn1w, bn1v, bn2w, bn2v}) {
        const std::size_t off = (std::size_t)((char*)v.data - (char*)I.a.buffer().data());
        be.copy_from_host(const_cast<Buffer&>(I.a.buffer()), off, ones.data(), v.numel() * sizeof(float));
      }
    }
    View<std::int32_t> dids = dids_b.view<std::int32_t>({docs, T}), am = am_b.view<std::int32_t>({docs, C});
    View<std::uint8_t> pad = pad_b.view<std::uint8_t>({docs, T});
    std::vector<float> logits((std::size_t)docs * nc);
    const std::size_t z2off = (std::size_t)((char*)z2.data - (char*)I.a.buffer().data());
    Tensor<float> scratch;
    auto run = [&]() {
      ops.embedding_forward(dids, emb, {}, x);
      CView<float> in = x;
      for (Index l = 0; l < L; ++l) {
        // a fresh state per document batch
        be.copy(const_cast<Buffer&>(I.a.buffer()), (std::size_t)((char*)h[l].data - (char*)I.a.buffer().data()), zero, 0, h[l].numel() * 4);
        be.copy(const_cast<Buffer&>(I.a.buffer()), (std::size_t)((char*)c[l].data - (char*)I.a.buffer().data()), zero, 0, c[l].numel() * 4);
        LstmParams<float> p{layers[l].w_ih, layers[l].w_hh_raw, layers[l].b_ih, layers[l].b_hh};
        ops.lstm_infer(p, in, h[l], c[l], outs[l], scratch);
        in = outs[l];
      }
      ops.concat_pool_forward(outs[L - 1], pad, pooled, am, T);
      ops.batchnorm_forward_eval(pooled, bn1w, bn1b, bn1m, bn1v, pooled2, 1e-5);
      ops.linear_forward(pooled2, w1, b1, z1);
      ops.relu_forward(z1, z1);
      ops.batchnorm_forward_eval(z1, bn2w, bn2b, bn2m, bn2v, z1b, 1e-5);
      ops.linear_forward(z1b, w2, b2, z2);
      be.copy_to_host(logits.data(), I.a.buffer(), z2off, logits.size() * sizeof(float));
    };
    return timed(a.seconds, be, run);
  };
  if (a.bench == "latency" || a.bench == "all") {
    const double s = classify_bench(1);
    print("{\"impl\": \"ours\", \"bench\": \"latency\", \"precision\": \"" + a.precision + "\", \"doc_len\": " +
          std::to_string(a.doc_len) + ", \"ms\": " + std::to_string(s * 1e3) + "}");
  }
  if (a.bench == "batch" || a.bench == "all") {
    const double s = classify_bench(a.batch_docs);
    print("{\"impl\": \"ours\", \"bench\": \"batch\", \"precision\": \"" + a.precision + "\", \"doc_len\": " +
          std::to_string(a.doc_len) + ", \"batch\": " + std::to_string(a.batch_docs) +
          ", \"docs_per_s\": " + std::to_string((double)a.batch_docs / s) + "}");
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // bad arguments, CUDA errors: one line, no abort
    std::fprintf(stderr, "cuda_bench: %s\n", e.what());
    return 1;
  }
}
