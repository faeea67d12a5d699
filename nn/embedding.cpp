// nn/embedding.cpp — embedding lookup with whole-row (embedding) dropout, and its backward.
#include "nn/embedding.h"

#include "nn/parallel.h"

#include <stdexcept>
#include <string>

namespace nn {
namespace {

template <typename T>
void check_embedding(CView<std::int32_t> ids, Index V, Index E, CView<T> row_mask, CView<T> o,
                     const char* fn, const char* oname) {
  if (!row_mask.empty() && (row_mask.numel() != V))
    throw std::invalid_argument(std::string(fn) + ": row_mask must have V = " + std::to_string(V) +
                                " elements, got shape " + row_mask.shape.str());
  if (o.ndim() < 1 || o.dim(o.ndim() - 1) != E || o.numel() != ids.numel() * E)
    throw std::invalid_argument(std::string(fn) + ": " + oname + " must be ids " +
                                ids.shape.str() + " × E = " + std::to_string(E) + ", got " +
                                o.shape.str());
}

[[noreturn]] void bad_id(const char* fn, Index i, std::int32_t id, Index V) {
  throw std::out_of_range(std::string(fn) + ": token id " + std::to_string(id) + " at position " +
                          std::to_string(i) + " is outside the vocabulary [0, " +
                          std::to_string(V) + ")");
}

}  // namespace

template <typename T>
void embedding_forward(CView<std::int32_t> ids, CView<T> table, CView<T> row_mask, View<T> out) {
  if (table.ndim() != 2)
    throw std::invalid_argument("embedding_forward: table must be [V, E], got " +
                                table.shape.str());
  const Index V = table.dim(0), E = table.dim(1), n = ids.numel();
  check_embedding<T>(ids, V, E, row_mask, out, "embedding_forward", "out");
  for (Index i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= V) bad_id("embedding_forward", i, ids[i], V);
  const bool masked = !row_mask.empty();
  parallel_ranges(n, n * E > (1 << 16) ? 1 : n, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) {
      const Index r = ids[i];
      const T* src = table.data + r * E;
      T* dst = out.data + i * E;
      if (masked) {
        const T m = row_mask[r];
        for (Index e = 0; e < E; ++e) dst[e] = src[e] * m;
      } else {
        for (Index e = 0; e < E; ++e) dst[e] = src[e];
      }
    }
  });
}

template <typename T>
void embedding_backward(CView<std::int32_t> ids, CView<T> row_mask, CView<T> dout,
                        std::int32_t pad_idx, View<T> dtable) {
  if (dtable.ndim() != 2)
    throw std::invalid_argument("embedding_backward: dtable must be [V, E], got " +
                                dtable.shape.str());
  const Index V = dtable.dim(0), E = dtable.dim(1), n = ids.numel();
  check_embedding<T>(ids, V, E, row_mask, dout, "embedding_backward", "dout");
  for (Index i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= V) bad_id("embedding_backward", i, ids[i], V);
  const bool masked = !row_mask.empty();
  for (Index i = 0; i < n; ++i) {
    const Index r = ids[i];
    if (r == pad_idx) continue;
    const T m = masked ? row_mask[r] : T(1);
    if (m == T(0)) continue;
    const T* g = dout.data + i * E;
    T* dst = dtable.data + r * E;
    for (Index e = 0; e < E; ++e) dst[e] += g[e] * m;
  }
}

#define INSPIRE_INST(T)                                                                        \
  template void embedding_forward<T>(CView<std::int32_t>, CView<T>, CView<T>, View<T>);        \
  template void embedding_backward<T>(CView<std::int32_t>, CView<T>, CView<T>, std::int32_t, \
                                      View<T>);
INSPIRE_INST(float)
INSPIRE_INST(double)
#undef INSPIRE_INST

}  // namespace nn
