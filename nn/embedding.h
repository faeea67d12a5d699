// nn/embedding.h — embedding lookup with fastai's EmbeddingDropout (whole-row dropout).
//
// fastai: masked = weight * mask[V,1]; out = F.embedding(ids, masked, padding_idx=pad_idx).
// The row mask is sampled separately with nn::dropout_mask(rng, embed_p, row_mask) on a [V]
// view (nn/dropout.h): entries are 0 or 1/(1-p); one mask per encoder forward call.
// Gradient convention (nn/param.h): dtable ACCUMULATES (+=) — the tied LM decoder adds its own
// contribution into the same buffer.
#pragma once

#include <cstdint>

#include "nn/tensor.h"

namespace nn {

// ids [...] int32 (any shape, e.g. [bs, sl]); table [V, E]; row_mask [V] or empty (no dropout,
// i.e. eval mode); out [..., E] (ids' shape with E appended, or any shape with ids.numel()*E
// elements whose last dim is E).
// out[i, :] = table[ids[i], :] * row_mask[ids[i]].
// Throws std::invalid_argument for bad shapes and std::out_of_range naming the position and
// value of an id outside [0, V).
template <typename T>
void embedding_forward(CView<std::int32_t> ids, CView<T> table, CView<T> row_mask, View<T> out);

// dtable[ids[i], :] += dout[i, :] * row_mask[ids[i]]  for every i with ids[i] != pad_idx
// (pass pad_idx = -1 to give every row gradient). row_mask may be empty (all ones).
// Not parallelised over i (rows may repeat); deterministic.
template <typename T>
void embedding_backward(CView<std::int32_t> ids, CView<T> row_mask, CView<T> dout,
                        std::int32_t pad_idx, View<T> dtable);

}  // namespace nn
