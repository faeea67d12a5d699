// cuda/kernels.cu — CUDA kernels. Each one calls the per-element math of nn/elementwise.h (the
// same functions the CPU backend runs) where such math exists (LSTM cell, dropout masks, Adam),
// so there is one definition of that math. Reductions (sums over rows/columns, losses, norms)
// use a fixed order or a fixed reduction tree: the same inputs give bitwise the same outputs on
// the same GPU (no atomics on floats).
//
// NOT RUN ON A GPU YET: written and compiled without a GPU (see cuda/kernels.cuh, cuda/README.md).
// Kept small: every kernel adds nvcc time for each architecture built.
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include "cuda/kernels.cuh"

namespace cuda_backend {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(i64 n) {
  i64 b = (n + kThreads - 1) / kThreads;
  if (b < 1) b = 1;
  if (b > (1 << 20)) b = 1 << 20;  // grid-stride loops cover the rest
  return (unsigned)b;
}
#define GRID_STRIDE(i, n) \
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

int last_error() { return (int)cudaGetLastError(); }

// ---- Adam --------------------------------------------------------------------------------------
__global__ void adam_step_kernel(float* w, const float* g, float* m, float* v, i64 n,
                                 nn::ew::AdamScalars s) {
  GRID_STRIDE(k, n) nn::ew::adam_update(w[k], g[k], m[k], v[k], s);
}

// ---- id validation -----------------------------------------------------------------------------
__global__ void ids_outside_kernel(const std::int32_t* ids, i64 n, std::int32_t hi,
                                   unsigned long long* first) {
  GRID_STRIDE(i, n) {
    const std::int32_t id = ids[i];
    if (id < 0 || id >= hi) atomicMin(first, (unsigned long long)i);
  }
}

// ---- embedding ---------------------------------------------------------------------------------
__global__ void embedding_forward_kernel(const std::int32_t* ids, i64 n, const float* table,
                                         const float* mask, i64 E, float* out) {
  GRID_STRIDE(k, n * E) {
    const i64 i = k / E, e = k % E;
    const std::int32_t id = ids[i];
    const float v = table[(i64)id * E + e];
    out[k] = mask ? v * mask[id] : v;
  }
}
__global__ void iota_kernel(std::int32_t* p, i64 n) {
  GRID_STRIDE(i, n) p[i] = (std::int32_t)i;
}
// keys: the ids stably sorted; pos: their positions. One thread per (segment head, e).
__global__ void embedding_backward_kernel(const std::int32_t* keys, const std::int32_t* pos,
                                          i64 n, const float* mask, const float* dout, i64 E,
                                          std::int32_t pad, float* dtable) {
  GRID_STRIDE(k, n * E) {
    const i64 s = k / E, e = k % E;
    const std::int32_t id = keys[s];
    if ((s > 0 && keys[s - 1] == id) || id == pad) continue;
    const float m = mask ? mask[id] : 1.0f;
    float acc = dtable[(i64)id * E + e];
    for (i64 j = s; j < n && keys[j] == id; ++j) acc += dout[(i64)pos[j] * E + e] * m;
    dtable[(i64)id * E + e] = acc;
  }
}

// ---- dropout -----------------------------------------------------------------------------------
__global__ void dropout_mask_kernel(float* mask, i64 n, std::uint64_t seed, double q, float keep) {
  GRID_STRIDE(g, (n + 3) / 4) {
    double u[4];
    nn::ew::philox_uniform4(seed, (std::uint64_t)g, u);
    for (int j = 0; j < 4; ++j) {
      const i64 k = 4 * g + j;
      if (k < n) mask[k] = nn::ew::dropout_mask_value<float>(u[j], q, keep);
    }
  }
}
__global__ void mul_mask_kernel(const float* x, const float* m, float* y, i64 n, i64 sl_c, i64 C,
                                bool acc) {
  GRID_STRIDE(i, n) {
    const i64 mi = sl_c > 0 ? (i / sl_c) * C + i % C : i;
    const float v = x[i] * m[mi];
    if (acc)
      y[i] += v;
    else
      y[i] = v;
  }
}

// ---- LSTM cell ---------------------------------------------------------------------------------
__global__ void lstm_cell_forward_kernel(float* G, i64 ldg, const float* b_ih, const float* b_hh,
                                         const float* c_prev, float* c_out, float* h1, i64 ld1,
                                         float* h2, i64 ld2, i64 bs, i64 H, bool keep) {
  GRID_STRIDE(k, bs * H) {
    const i64 b = k / H, j = k % H;
    float* z = G + b * ldg;
    float i = z[j] + b_ih[j] + b_hh[j];
    float f = z[H + j] + b_ih[H + j] + b_hh[H + j];
    float g = z[2 * H + j] + b_ih[2 * H + j] + b_hh[2 * H + j];
    float o = z[3 * H + j] + b_ih[3 * H + j] + b_hh[3 * H + j];
    const float cp = c_prev ? c_prev[k] : 0.0f;
    float c, h;
    nn::ew::lstm_cell_forward(i, f, g, o, cp, c, h);
    if (keep) z[j] = i, z[H + j] = f, z[2 * H + j] = g, z[3 * H + j] = o;
    c_out[k] = c;
    h1[b * ld1 + j] = h;
    if (h2) h2[b * ld2 + j] = h;
  }
}
__global__ void lstm_cell_backward_kernel(float* G, i64 ldg, const float* c, const float* c_prev,
                                          const float* dy, i64 ldy, const float* dh_rec,
                                          float* dc, i64 bs, i64 H) {
  GRID_STRIDE(k, bs * H) {
    const i64 b = k / H, j = k % H;
    float* z = G + b * ldg;
    float i = z[j], f = z[H + j], g = z[2 * H + j], o = z[3 * H + j];
    const float ct = c[k], cp = c_prev[k];
    const float dh = (dy ? dy[b * ldy + j] : 0.0f) + (dh_rec ? dh_rec[k] : 0.0f);
    float dct = dc[k], tmp;
    nn::ew::lstm_cell_backward(i, f, g, o, ct, cp, dh, dct, tmp);
    z[j] = i, z[H + j] = f, z[2 * H + j] = g, z[3 * H + j] = o;
    dc[k] = dct;
  }
}

// ---- sums, bias, ReLU --------------------------------------------------------------------------
__global__ void colsum_acc_kernel(const float* A, i64 rows, i64 cols, i64 lda, float* o1,
                                  float* o2) {
  GRID_STRIDE(j, cols) {
    float s = 0;
    for (i64 r = 0; r < rows; ++r) s += A[r * lda + j];
    if (o1) o1[j] += s;
    if (o2) o2[j] += s;
  }
}
__global__ void rows_set_kernel(float* y, const float* b, i64 rows, i64 N) {
  GRID_STRIDE(k, rows * N) y[k] = b[k % N];
}
__global__ void relu_forward_kernel(const float* x, float* y, i64 n) {
  GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
__global__ void relu_backward_kernel(const float* y, const float* dy, float* dx, i64 n) {
  GRID_STRIDE(i, n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
__global__ void scale_kernel(float* x, i64 n, float c) {
  GRID_STRIDE(i, n) x[i] *= c;
}

// ---- batch-norm (the CPU's double-precision statistics) ----------------------------------------
__global__ void batchnorm_train_kernel(const float* x, const float* w, const float* b,
                                       float* rmean, float* rvar, float* y, float* xhat,
                                       float* rstd, i64 N, i64 C, double mom, double eps) {
  GRID_STRIDE(c, C) {
    double mean = 0, var = 0;
    for (i64 n = 0; n < N; ++n) mean += (double)x[n * C + c];
    mean /= (double)N;
    for (i64 n = 0; n < N; ++n) {
      const double d = (double)x[n * C + c] - mean;
      var += d * d;
    }
    const float rs = (float)(1.0 / sqrt(var / (double)N + eps));
    rstd[c] = rs;
    rmean[c] = (float)((1.0 - mom) * (double)rmean[c] + mom * mean);
    rvar[c] = (float)((1.0 - mom) * (double)rvar[c] + mom * (var / (double)(N - 1)));
    for (i64 n = 0; n < N; ++n) {
      const float xh = (float)(((double)x[n * C + c] - mean) * (double)rs);
      xhat[n * C + c] = xh;
      y[n * C + c] = xh * w[c] + b[c];
    }
  }
}
__global__ void batchnorm_eval_kernel(const float* x, const float* w, const float* b,
                                      const float* rmean, const float* rvar, float* y, i64 N,
                                      i64 C, double eps) {
  GRID_STRIDE(k, N * C) {
    const i64 c = k % C;
    const float rs = (float)(1.0 / sqrt((double)rvar[c] + eps));
    y[k] = (x[k] - rmean[c]) * rs * w[c] + b[c];
  }
}
__global__ void batchnorm_backward_kernel(const float* dy, const float* w, const float* xhat,
                                          const float* rstd, float* dx, float* dw, float* db,
                                          i64 N, i64 C) {
  GRID_STRIDE(c, C) {
    double sdy = 0, sdyx = 0;
    for (i64 n = 0; n < N; ++n) {
      sdy += (double)dy[n * C + c];
      sdyx += (double)dy[n * C + c] * (double)xhat[n * C + c];
    }
    if (db) db[c] += (float)sdy;
    if (dw) dw[c] += (float)sdyx;
    if (dx) {
      const double k = (double)w[c] * (double)rstd[c] / (double)N;
      for (i64 n = 0; n < N; ++n)
        dx[n * C + c] = (float)(k * ((double)N * (double)dy[n * C + c] - sdy -
                                     (double)xhat[n * C + c] * sdyx));
    }
  }
}

// ---- masked concat pooling ---------------------------------------------------------------------
__device__ bool pool_row(const std::uint8_t* m, i64 T, i64 bptt, i64* len, i64* last) {
  i64 pads = 0, k = 0;
  const i64 t0 = T - bptt > 0 ? T - bptt : 0;
  for (i64 t = 0; t < T; ++t) {
    pads += (m[t] != 0);
    if (t >= t0) k += (m[t] != 0);
  }
  *len = T - pads;
  *last = T - 1 - k;
  return pads < T;
}
__global__ void concat_pool_forward_kernel(const float* out, const std::uint8_t* pad,
                                           float* pooled, std::int32_t* argmax, i64 bs, i64 T,
                                           i64 C, i64 bptt, unsigned long long* bad) {
  GRID_STRIDE(k, bs * C) {
    const i64 b = k / C, c = k % C;
    const std::uint8_t* m = pad + b * T;
    i64 len, last;
    if (!pool_row(m, T, bptt, &len, &last)) {
      atomicMin(bad, (unsigned long long)b);
      continue;
    }
    const float* o = out + b * T * C + c;
    float mx = 0, sum = 0;
    std::int32_t am = -1;
    for (i64 t = 0; t < T; ++t) {
      if (m[t]) continue;
      const float v = o[t * C];
      if (am < 0 || v > mx) mx = v, am = (std::int32_t)t;
      sum += v;
    }
    float* p = pooled + b * 3 * C;
    p[c] = o[last * C];
    p[C + c] = mx;
    p[2 * C + c] = sum * (1.0f / (float)len);
    argmax[k] = am;
  }
}
__global__ void concat_pool_backward_kernel(const float* dpooled, const std::uint8_t* pad,
                                            const std::int32_t* argmax, float* dout, i64 bs,
                                            i64 T, i64 C, i64 bptt, unsigned long long* bad) {
  GRID_STRIDE(k, bs * C) {
    const i64 b = k / C, c = k % C;
    const std::uint8_t* m = pad + b * T;
    i64 len, last;
    const std::int32_t am = argmax[k];
    if (!pool_row(m, T, bptt, &len, &last) || am < 0 || am >= T) {
      atomicMin(bad, (unsigned long long)b);
      continue;
    }
    const float* dp = dpooled + b * 3 * C;
    const float dlast = dp[c], dmx = dp[C + c], davg = dp[2 * C + c];
    const float inv = 1.0f / (float)len;
    float* d = dout + b * T * C + c;
    for (i64 t = 0; t < T; ++t) {
      float v = m[t] ? 0.0f : davg * inv;
      if (t == am) v += dmx;
      if (t == last) v += dlast;
      d[t * C] = v;
    }
  }
}

// ---- softmax cross-entropy (block per row) -----------------------------------------------------
__global__ void softmax_ce_rows_kernel(const float* in, float* out, const float* bias,
                                       const std::int32_t* targets, i64 V, float gscale,
                                       double* loss, std::int32_t* correct) {
  __shared__ float smax[kThreads];
  __shared__ i64 sidx[kThreads];
  __shared__ double ssum[kThreads];
  const i64 r = blockIdx.x;
  const float* x = in + r * V;
  const int tid = threadIdx.x;
  const std::int32_t t = targets[r];
  // Read before any thread writes `out` (which may alias `in`).
  const double lt = tid == 0 ? (double)(x[t] + (bias ? bias[t] : 0.0f)) : 0.0;
  float m = -INFINITY;
  i64 mi = -1;
  for (i64 v = tid; v < V; v += blockDim.x) {
    const float z = x[v] + (bias ? bias[v] : 0.0f);
    if (mi < 0 || z > m) m = z, mi = v;
  }
  smax[tid] = m, sidx[tid] = mi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {  // larger value wins; ties: smaller index
    if (tid < s) {
      const float om = smax[tid + s];
      const i64 oi = sidx[tid + s];
      if (oi >= 0 && (sidx[tid] < 0 || om > smax[tid] || (om == smax[tid] && oi < sidx[tid])))
        smax[tid] = om, sidx[tid] = oi;
    }
    __syncthreads();
  }
  const float rmax = smax[0];
  const i64 amax = sidx[0];
  float part = 0;
  for (i64 v = tid; v < V; v += blockDim.x) part += expf(x[v] + (bias ? bias[v] : 0.0f) - rmax);
  ssum[tid] = (double)part;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) ssum[tid] += ssum[tid + s];
    __syncthreads();
  }
  const double sum = ssum[0];
  if (tid == 0) {
    loss[r] = log(sum) + (double)rmax - lt;
    correct[r] = amax == t ? 1 : 0;
  }
  if (out) {
    const float c = (float)((double)gscale / sum);
    float* y = out + r * V;
    for (i64 v = tid; v < V; v += blockDim.x) {
      const float p = expf(x[v] + (bias ? bias[v] : 0.0f) - rmax) * c;
      y[v] = v == t ? p - gscale : p;
    }
  }
}
__global__ void sum_loss_kernel(const double* loss, const std::int32_t* correct, i64 n,
                                double* out) {
  __shared__ double sl[kThreads];
  __shared__ double sc[kThreads];
  const int tid = threadIdx.x;
  double a = 0, b = 0;
  for (i64 i = tid; i < n; i += blockDim.x) a += loss[i], b += (double)correct[i];
  sl[tid] = a, sc[tid] = b;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) sl[tid] += sl[tid + s], sc[tid] += sc[tid + s];
    __syncthreads();
  }
  if (tid == 0) out[0] = sl[0], out[1] = sc[0];
}
constexpr int kPartials = 1024;
__global__ void sum_squares_kernel(const float* x, i64 n, double* partial) {
  __shared__ double s[kThreads];
  double a = 0;
  GRID_STRIDE(i, n) a += (double)x[i] * (double)x[i];
  s[threadIdx.x] = a;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}
__global__ void sum_partials_kernel(double* partial, int n) {
  __shared__ double s[kThreads];
  double a = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) a += partial[i];
  s[threadIdx.x] = a;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[0] = s[0];
}

// Sets a device flag to `init`, runs `launch`, copies the flag back: -1 if unchanged.
template <typename F>
int with_flag(i64* flag, i64 init, i64* result, F launch) {
  unsigned long long v = (unsigned long long)init;
  cudaError_t e = cudaMemcpy(flag, &v, sizeof v, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) return (int)e;
  launch((unsigned long long*)flag);
  if ((e = cudaGetLastError()) != cudaSuccess) return (int)e;
  if ((e = cudaMemcpy(&v, flag, sizeof v, cudaMemcpyDeviceToHost)) != cudaSuccess) return (int)e;
  *result = v == (unsigned long long)init ? -1 : (i64)v;
  return 0;
}

}  // namespace

int launch_adam_step(float* w, const float* g, float* m, float* v, i64 n,
                     const nn::ew::AdamScalars& s) {
  if (n <= 0) return 0;
  adam_step_kernel<<<blocks_for(n), kThreads>>>(w, g, m, v, n, s);
  return last_error();
}

i64 first_id_outside(const std::int32_t* ids, i64 n, std::int32_t hi, i64* flag, int* err) {
  i64 r = -1;
  if (n <= 0) return -1;
  *err = with_flag(flag, n, &r, [&](unsigned long long* f) {
    ids_outside_kernel<<<blocks_for(n), kThreads>>>(ids, n, hi, f);
  });
  return *err ? -2 : r;
}

int launch_embedding_forward(const std::int32_t* ids, i64 n, const float* table,
                             const float* row_mask, i64 E, float* out) {
  if (n * E <= 0) return 0;
  embedding_forward_kernel<<<blocks_for(n * E), kThreads>>>(ids, n, table, row_mask, E, out);
  return last_error();
}

int launch_embedding_backward(const std::int32_t* ids, i64 n, const float* row_mask,
                              const float* dout, i64 E, std::int32_t pad_idx, float* dtable,
                              i64 V, ScratchFn scratch, void* ctx) {
  if (n * E <= 0) return 0;
  int bits = 1;
  while (bits < 31 && ((i64)1 << bits) < V) ++bits;
  std::size_t temp = 0;
  cudaError_t e = cub::DeviceRadixSort::SortPairs(nullptr, temp, (const std::int32_t*)nullptr,
                                                  (std::int32_t*)nullptr,
                                                  (const std::int32_t*)nullptr,
                                                  (std::int32_t*)nullptr, (int)n, 0, bits);
  if (e != cudaSuccess) return (int)e;
  const std::size_t arr = ((std::size_t)n * sizeof(std::int32_t) + 255) / 256 * 256;
  char* base = (char*)scratch(3 * arr + temp, ctx);
  if (!base) return (int)cudaErrorMemoryAllocation;
  auto* keys = (std::int32_t*)base;
  auto* pos_in = (std::int32_t*)(base + arr);
  auto* pos = (std::int32_t*)(base + 2 * arr);
  iota_kernel<<<blocks_for(n), kThreads>>>(pos_in, n);
  e = cub::DeviceRadixSort::SortPairs(base + 3 * arr, temp, ids, keys, pos_in, pos, (int)n, 0,
                                      bits);
  if (e != cudaSuccess) return (int)e;
  embedding_backward_kernel<<<blocks_for(n * E), kThreads>>>(keys, pos, n, row_mask, dout, E,
                                                             pad_idx, dtable);
  return last_error();
}

int launch_dropout_mask(float* mask, i64 n, std::uint64_t seed, double q, float keep) {
  if (n <= 0) return 0;
  dropout_mask_kernel<<<blocks_for((n + 3) / 4), kThreads>>>(mask, n, seed, q, keep);
  return last_error();
}
int launch_mul_mask(const float* x, const float* m, float* y, i64 n, i64 sl_c, i64 C,
                    bool accumulate) {
  if (n <= 0) return 0;
  mul_mask_kernel<<<blocks_for(n), kThreads>>>(x, m, y, n, sl_c, C, accumulate);
  return last_error();
}

int launch_lstm_cell_forward(float* G, i64 ldg, const float* b_ih, const float* b_hh,
                             const float* c_prev, float* c_out, float* h1, i64 ld1, float* h2,
                             i64 ld2, i64 bs, i64 H, bool keep_acts) {
  if (bs * H <= 0) return 0;
  lstm_cell_forward_kernel<<<blocks_for(bs * H), kThreads>>>(G, ldg, b_ih, b_hh, c_prev, c_out,
                                                             h1, ld1, h2, ld2, bs, H, keep_acts);
  return last_error();
}
int launch_lstm_cell_backward(float* G, i64 ldg, const float* c, const float* c_prev,
                              const float* dy, i64 ldy, const float* dh_rec, float* dc, i64 bs,
                              i64 H) {
  if (bs * H <= 0) return 0;
  lstm_cell_backward_kernel<<<blocks_for(bs * H), kThreads>>>(G, ldg, c, c_prev, dy, ldy, dh_rec,
                                                              dc, bs, H);
  return last_error();
}

int launch_colsum_acc(const float* A, i64 rows, i64 cols, i64 lda, float* out1, float* out2) {
  if (cols <= 0 || rows <= 0 || (!out1 && !out2)) return 0;
  colsum_acc_kernel<<<blocks_for(cols), kThreads>>>(A, rows, cols, lda, out1, out2);
  return last_error();
}
int launch_rows_set(float* y, const float* b, i64 rows, i64 N) {
  if (rows * N <= 0) return 0;
  rows_set_kernel<<<blocks_for(rows * N), kThreads>>>(y, b, rows, N);
  return last_error();
}
int launch_relu_forward(const float* x, float* y, i64 n) {
  if (n <= 0) return 0;
  relu_forward_kernel<<<blocks_for(n), kThreads>>>(x, y, n);
  return last_error();
}
int launch_relu_backward(const float* y, const float* dy, float* dx, i64 n) {
  if (n <= 0) return 0;
  relu_backward_kernel<<<blocks_for(n), kThreads>>>(y, dy, dx, n);
  return last_error();
}
int launch_scale(float* x, i64 n, float c) {
  if (n <= 0) return 0;
  scale_kernel<<<blocks_for(n), kThreads>>>(x, n, c);
  return last_error();
}

int launch_batchnorm_train(const float* x, const float* w, const float* b, float* rmean,
                           float* rvar, float* y, float* xhat, float* rstd, i64 N, i64 C,
                           double momentum, double eps) {
  if (C <= 0) return 0;
  batchnorm_train_kernel<<<blocks_for(C), kThreads>>>(x, w, b, rmean, rvar, y, xhat, rstd, N, C,
                                                      momentum, eps);
  return last_error();
}
int launch_batchnorm_eval(const float* x, const float* w, const float* b, const float* rmean,
                          const float* rvar, float* y, i64 N, i64 C, double eps) {
  if (N * C <= 0) return 0;
  batchnorm_eval_kernel<<<blocks_for(N * C), kThreads>>>(x, w, b, rmean, rvar, y, N, C, eps);
  return last_error();
}
int launch_batchnorm_backward(const float* dy, const float* w, const float* xhat,
                              const float* rstd, float* dx, float* dw, float* db, i64 N, i64 C) {
  if (C <= 0) return 0;
  batchnorm_backward_kernel<<<blocks_for(C), kThreads>>>(dy, w, xhat, rstd, dx, dw, db, N, C);
  return last_error();
}

int launch_concat_pool_forward(const float* out, const std::uint8_t* pad, float* pooled,
                               std::int32_t* argmax, i64 bs, i64 T, i64 C, i64 bptt, i64* bad,
                               i64* bad_row) {
  *bad_row = -1;
  if (bs * C <= 0) return 0;
  return with_flag(bad, bs, bad_row, [&](unsigned long long* f) {
    concat_pool_forward_kernel<<<blocks_for(bs * C), kThreads>>>(out, pad, pooled, argmax, bs, T,
                                                                 C, bptt, f);
  });
}
int launch_concat_pool_backward(const float* dpooled, const std::uint8_t* pad,
                                const std::int32_t* argmax, float* dout, i64 bs, i64 T, i64 C,
                                i64 bptt, i64* bad, i64* bad_row) {
  *bad_row = -1;
  if (bs * C <= 0) return 0;
  return with_flag(bad, bs, bad_row, [&](unsigned long long* f) {
    concat_pool_backward_kernel<<<blocks_for(bs * C), kThreads>>>(dpooled, pad, argmax, dout, bs,
                                                                  T, C, bptt, f);
  });
}

int launch_softmax_ce_rows(const float* in, float* out, const float* bias,
                           const std::int32_t* targets, i64 rows, i64 V, float gscale,
                           double* loss, std::int32_t* correct) {
  if (rows <= 0) return 0;
  softmax_ce_rows_kernel<<<(unsigned)rows, kThreads>>>(in, out, bias, targets, V, gscale, loss,
                                                       correct);
  return last_error();
}
int sum_loss(const double* loss, const std::int32_t* correct, i64 n, double* dev_out,
             double* host_loss, i64* host_correct) {
  *host_loss = 0, *host_correct = 0;
  if (n <= 0) return 0;
  sum_loss_kernel<<<1, kThreads>>>(loss, correct, n, dev_out);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return (int)e;
  double h[2];
  if ((e = cudaMemcpy(h, dev_out, sizeof h, cudaMemcpyDeviceToHost)) != cudaSuccess) return (int)e;
  *host_loss = h[0], *host_correct = (i64)h[1];
  return 0;
}
int sum_squares(const float* x, i64 n, double* partial, double* host_out) {
  *host_out = 0;
  if (n <= 0) return 0;
  i64 nb = (n + kThreads - 1) / kThreads;
  const int blocks = (int)(nb < kPartials ? nb : kPartials);
  sum_squares_kernel<<<blocks, kThreads>>>(x, n, partial);
  sum_partials_kernel<<<1, kThreads>>>(partial, blocks);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return (int)e;
  return (int)cudaMemcpy(host_out, partial, sizeof(double), cudaMemcpyDeviceToHost);
}

}  // namespace cuda_backend
