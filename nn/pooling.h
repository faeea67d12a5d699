// nn/pooling.h — fastai's masked_concat_pool (ULMFiT classifier head input).
//
// out [bs, T, C], pad_mask [bs, T] (uint8, nonzero = pad)  →  pooled [bs, 3C] = [last, max, avg]:
//   len_b  = T − Σ_t pad[b, t]
//   avg_b  = Σ_{t not pad} out[b, t] / len_b
//   max_b  = max_{t not pad} out[b, t]   (elementwise; the first maximal t wins on ties)
//   last_b = out[b, T − 1 − k_b], k_b = number of pads in the last `bptt` columns of pad_mask
// Gradient convention: dout is WRITTEN (=).
#pragma once

#include <cstdint>

#include "nn/tensor.h"

namespace nn {

// argmax [bs, C] (caller-owned cache): the time index chosen by the max, read by backward.
// Throws std::invalid_argument for bad shapes, for bptt < 1, and for a row with no non-pad
// position (len_b = 0: fastai would produce NaN/-inf), naming the row.
template <typename T>
void masked_concat_pool_forward(CView<T> out, CView<std::uint8_t> pad_mask, View<T> pooled,
                                View<std::int32_t> argmax, Index bptt = 72);

// dpooled [bs, 3C] → dout [bs, T, C] (written, every position: zero where nothing flows).
template <typename T>
void masked_concat_pool_backward(CView<T> dpooled, CView<std::uint8_t> pad_mask,
                                 CView<std::int32_t> argmax, View<T> dout, Index bptt = 72);

}  // namespace nn
