// nn/dropout.h — inverted dropout in its three AWD-LSTM flavours, plus the shared mask sampler.
//
// A mask holds the multiplier itself: 0 (dropped) or 1/(1-p) (kept), exactly as fastai's
// `dropout_mask(x, sz, p) = x.new_empty(*sz).bernoulli_(1-p).div_(1-p)`. The layers only
// multiply by a mask, so tests (and golden fixtures) can feed any mask they like.
// Sample a fresh mask at every forward call in training mode; in eval mode skip the layer
// (identity), or pass a mask filled with 1.
//
// Gradient convention (nn/param.h): input gradients are WRITTEN (=); the only parameter
// gradient here (weight_dropout_backward's dW_raw) ACCUMULATES (+=).
// All elementwise functions may run in place (y.data == x.data, dx.data == dy.data).
#pragma once

#include "nn/rng.h"
#include "nn/tensor.h"

namespace nn {

// Fill `mask` (any shape) with independent Bernoulli(1-p)/(1-p) draws from `rng`:
// each element is 0 with probability p, else 1/(1-p). p in [0, 1]; p = 0 gives all ones,
// p = 1 all zeros. Throws std::invalid_argument for p outside [0, 1] (or NaN).
// Use it for every mask below: plain dropout ([N, C], same shape as x), RNN dropout ([bs, C]),
// weight dropout ([4h, h], same shape as W), embedding dropout ([V], one value per row).
template <typename T>
void dropout_mask(Rng& rng, double p, View<T> mask);

// ---- Plain (elementwise) dropout: y = x ⊙ mask, mask has x's shape (numel must match) -------
template <typename T>
void dropout_forward(CView<T> x, CView<T> mask, View<T> y);
// dx = dy ⊙ mask (written)
template <typename T>
void dropout_backward(CView<T> dy, CView<T> mask, View<T> dx);

// ---- RNN (variational) dropout: x, y [bs, sl, C]; mask [bs, C] (or [bs, 1, C]) --------------
// y[b, t, c] = x[b, t, c] * mask[b, c]: the same mask for every time step of a sequence.
template <typename T>
void rnn_dropout_forward(CView<T> x, CView<T> mask, View<T> y);
// dx[b, t, c] = dy[b, t, c] * mask[b, c] (written)
template <typename T>
void rnn_dropout_backward(CView<T> dy, CView<T> mask, View<T> dx);

// ---- Weight dropout (DropConnect, fastai WeightDropout on W_hh) -----------------------------
// W_eff = W_raw ⊙ mask, all three of the same shape (e.g. [4h, h]). Resample the mask at every
// training forward call; in eval mode W_eff = W_raw (copy, or use W_raw directly).
template <typename T>
void weight_dropout_forward(CView<T> W_raw, CView<T> mask, View<T> W_eff);
// dW_raw += dW_eff ⊙ mask (ACCUMULATED: dW_raw is a parameter gradient).
template <typename T>
void weight_dropout_backward(CView<T> dW_eff, CView<T> mask, View<T> dW_raw);

}  // namespace nn
