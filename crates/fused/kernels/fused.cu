// Fused LLaMA-block kernels of crosslore-fused (issue 8): RMSNorm, RoPE with the head transpose,
// SwiGLU, causal softmax and cross-entropy, each forward and backward. The math of every kernel is
// stated in the Rust module of the same operation (src/*.rs) and written out in src/reference.rs;
// inputs are f32 or bf16 (`T`), arithmetic is f32, outputs are rounded to `T` once (statistics,
// dw and losses stay f32).
//
// Every extern "C" kernel exists as `<name>_f32` and `<name>_bf16`. Kernels taking `vec` load and
// store 16 bytes at a time (4 f32 / 8 bf16) when the launcher found every pointer 16-byte aligned
// and the vectorised lengths divisible by that width; otherwise (vec = 0) one element at a time.
// The branch is uniform, so both paths are compiled into one kernel.
#include <cuda_bf16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float tof(float x) { return x; }
__device__ __forceinline__ float tof(bf16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T fromf(float x);
template <> __device__ __forceinline__ float fromf<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 fromf<bf16>(float x) { return __float2bfloat16(x); }

// x rounded to T and back (identity for f32).
template <typename T> __device__ __forceinline__ float round_t(float x) { return tof(fromf<T>(x)); }

// Exponentials use the fast __expf (ex2.approx: relative error ~1e-7 + |x| 2^-24), divisions
// by a row sum a multiplication by its reciprocal: a few f32 ulps, inside the f32 check's 1e-5.

// Elements per 16-byte vector.
template <typename T> struct Vw { static constexpr int value = 16 / sizeof(T); };

// The 4 f32 / 8 bf16 values of one 16-byte vector as f32.
template <typename T> __device__ __forceinline__ void unpack(const uint4 &v, float *o) {
  if constexpr (sizeof(T) == 4) {
    o[0] = __uint_as_float(v.x); o[1] = __uint_as_float(v.y);
    o[2] = __uint_as_float(v.z); o[3] = __uint_as_float(v.w);
  } else {
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&v);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      float2 f = __bfloat1622float2(h[i]);
      o[2 * i] = f.x;
      o[2 * i + 1] = f.y;
    }
  }
}

// Loads V consecutive elements (V = 1 or one 16-byte vector) as f32.
template <typename T, int V> __device__ __forceinline__ void ld(const T *p, float *o) {
  if constexpr (V == 1) {
    o[0] = tof(p[0]);
  } else {
    static_assert(V == Vw<T>::value, "one 16-byte vector");
    unpack<T>(*reinterpret_cast<const uint4 *>(p), o);
  }
}

// Stores V f32 values rounded to T (round to nearest even, as candle's casts).
template <typename T, int V> __device__ __forceinline__ void st(T *p, const float *o) {
  if constexpr (V == 1) {
    p[0] = fromf<T>(o[0]);
  } else if constexpr (sizeof(T) == 4) {
    *reinterpret_cast<float4 *>(p) = make_float4(o[0], o[1], o[2], o[3]);
  } else {
    uint4 v;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&v);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(o[2 * i], o[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = v;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
// `sh` holds 33 floats; the leading barrier lets consecutive calls reuse it.
__device__ float block_sum(float v, float *sh) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  if (w == 0) {
    float t = lane < nw ? sh[lane] : 0.f;
    t = warp_sum(t);
    if (lane == 0) sh[32] = t;
  }
  __syncthreads();
  return sh[32];
}

// Online softmax statistics: (m, l) with l = sum exp(z - m); merge of two partial states.
// An empty state is (-inf, 0).
__device__ __forceinline__ void ms_merge(float &m, float &l, float m2, float l2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) return;
  l = l * __expf(m - mn) + l2 * __expf(m2 - mn);
  m = mn;
}

// Adds V values (-inf = excluded) to the state (m, l).
template <int V> __device__ __forceinline__ void ms_add(float &m, float &l, const float *z) {
  float cm = -INFINITY;
#pragma unroll
  for (int k = 0; k < V; k++) cm = fmaxf(cm, z[k]);
  if (cm == -INFINITY) return;
  if (cm > m) {
    l *= __expf(m - cm);
    m = cm;
  }
#pragma unroll
  for (int k = 0; k < V; k++)
    if (z[k] != -INFINITY) l += __expf(z[k] - m);
}

__device__ __forceinline__ void warp_ms(float &m, float &l) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float l2 = __shfl_xor_sync(0xffffffffu, l, o);
    ms_merge(m, l, m2, l2);
  }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm forward: one block per row. rstd = 1 / sqrt(mean(x^2) + eps), y = round(round(x rstd) w).
template <typename T, int V>
__device__ void rms_fwd(const T *__restrict__ x, const T *__restrict__ w, T *__restrict__ y,
                        float *__restrict__ rstd, int h, float eps) {
  __shared__ float sh[33];
  const size_t row = blockIdx.x;
  const T *xr = x + row * h;
  T *yr = y + row * h;
  float ss = 0.f;
  for (int c = threadIdx.x * V; c < h; c += blockDim.x * V) {
    float a[V];
    ld<T, V>(xr + c, a);
#pragma unroll
    for (int k = 0; k < V; k++) ss += a[k] * a[k];
  }
  ss = block_sum(ss, sh);
  const float r = 1.0f / sqrtf(ss / (float)h + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  for (int c = threadIdx.x * V; c < h; c += blockDim.x * V) {
    float a[V], wv[V];
    ld<T, V>(xr + c, a);
    ld<T, V>(w + c, wv);
#pragma unroll
    for (int k = 0; k < V; k++) a[k] = round_t<T>(a[k] * r) * wv[k];
    st<T, V>(yr + c, a);
  }
}

#define RMS_FWD(S, T)                                                                             \
  extern "C" __global__ void rms_norm_fwd_##S(const T *x, const T *w, T *y, float *rstd, int h,  \
                                              float eps, int vec) {                               \
    if (vec) rms_fwd<T, Vw<T>::value>(x, w, y, rstd, h, eps);                                     \
    else rms_fwd<T, 1>(x, w, y, rstd, h, eps);                                                    \
  }
RMS_FWD(f32, float)
RMS_FWD(bf16, bf16)

// RMSNorm backward, dx part and per-block dw partials: block b handles rows b, b + G, ...
// (G = gridDim.x); n = x rstd (f32), dn = dy w, dx = rstd (dn - n mean(dn n)). Each thread owns
// fixed columns (chunk i of thread t: columns (i blockDim + t) V ..) and accumulates dy round(n)
// for them in shared memory at acc[(i V + k) blockDim + t] (conflict-free; dynamic, one float per
// column rounded up to whole chunks), written to part[b, :] at the end. `col_sum` adds the G rows.
template <typename T, int V>
__device__ void rms_bwd(const T *__restrict__ dy, const T *__restrict__ x,
                        const T *__restrict__ w, const float *__restrict__ rstd,
                        T *__restrict__ dx, float *__restrict__ part, int rows, int h) {
  extern __shared__ float acc[];
  __shared__ float sh[33];
  const int nt = blockDim.x, t = threadIdx.x;
  for (int i = 0, c = t * V; c < h; i++, c += nt * V)
#pragma unroll
    for (int k = 0; k < V; k++) acc[(i * V + k) * nt + t] = 0.f;
  for (int row = blockIdx.x; row < rows; row += gridDim.x) {
    const float r = rstd[row];
    const T *dyr = dy + (size_t)row * h;
    const T *xr = x + (size_t)row * h;
    T *dxr = dx + (size_t)row * h;
    float dot = 0.f;
    for (int i = 0, c = t * V; c < h; i++, c += nt * V) {
      float g[V], a[V], wv[V];
      ld<T, V>(dyr + c, g);
      ld<T, V>(xr + c, a);
      ld<T, V>(w + c, wv);
#pragma unroll
      for (int k = 0; k < V; k++) {
        const float n = a[k] * r;
        dot += g[k] * wv[k] * n;
        acc[(i * V + k) * nt + t] += g[k] * round_t<T>(n);
      }
    }
    dot = block_sum(dot, sh) / (float)h;
    for (int c = t * V; c < h; c += nt * V) {
      float g[V], a[V], wv[V];
      ld<T, V>(dyr + c, g);
      ld<T, V>(xr + c, a);
      ld<T, V>(w + c, wv);
#pragma unroll
      for (int k = 0; k < V; k++) {
        const float n = a[k] * r;
        g[k] = (g[k] * wv[k] - n * dot) * r;
      }
      st<T, V>(dxr + c, g);
    }
  }
  for (int i = 0, c = t * V; c < h; i++, c += nt * V)
#pragma unroll
    for (int k = 0; k < V; k++) part[(size_t)blockIdx.x * h + c + k] = acc[(i * V + k) * nt + t];
}

#define RMS_BWD(S, T)                                                                             \
  extern "C" __global__ void rms_norm_bwd_##S(const T *dy, const T *x, const T *w,              \
                                              const float *rstd, T *dx, float *part, int rows,    \
                                              int h, int vec) {                                   \
    if (vec) rms_bwd<T, Vw<T>::value>(dy, x, w, rstd, dx, part, rows, h);                         \
    else rms_bwd<T, 1>(dy, x, w, rstd, dx, part, rows, h);                                        \
  }
RMS_BWD(f32, float)
RMS_BWD(bf16, bf16)

// out[c] = sum_i part[i, c] for part: [g, h] f32 (fixed order: deterministic). Block (32, 8):
// 32 columns, 8 interleaved row slices, then a shared-memory sum of the 8.
extern "C" __global__ void col_sum_f32(const float *__restrict__ part, float *__restrict__ out,
                                       int g, int h) {
  __shared__ float sh[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  float s = 0.f;
  if (c < h)
    for (int i = threadIdx.y; i < g; i += 8) s += part[(size_t)i * h + c];
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < h) {
    float t = 0.f;
#pragma unroll
    for (int j = 0; j < 8; j++) t += sh[j][threadIdx.x];
    out[c] = t;
  }
}

// ---------------------------------------------------------------------------------------------
// RoPE fused with the head transpose. Work item: V elements of the first half of one head row and
// their partners in the second half. Forward: x [b, s, n, d] -> y [b, n, s, d],
// y1 = x1 c1 - x2 s1, y2 = x2 c2 + x1 s2. Backward: dy [b, n, s, d] -> dx [b, s, n, d],
// dx1 = g1 c1 + g2 s2, dx2 = g2 c2 - g1 s1. Items are ordered as the [b, s, n, d] side, so that
// consecutive threads walk one head row and then the next head of the same position.
template <typename T, int V, bool FWD>
__device__ void rope_k(const T *__restrict__ in, const T *__restrict__ cs,
                       const T *__restrict__ sn, T *__restrict__ out, int s, int n, int d,
                       size_t items) {
  const int half = d / 2, per_row = half / V;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < items;
       i += (size_t)gridDim.x * blockDim.x) {
    // 32-bit index arithmetic (the launcher keeps items < 2^32).
    const unsigned ii = (unsigned)i;
    const int c = (int)(ii % (unsigned)per_row) * V;
    const unsigned bsn = ii / (unsigned)per_row; // row of the [b, s, n, d] side
    const unsigned hh = bsn % (unsigned)n;
    const unsigned bs = bsn / (unsigned)n;
    const unsigned si = bs % (unsigned)s;
    const unsigned bi = bs / (unsigned)s;
    const size_t bns = (((size_t)bi * n + hh) * s + si) * d; // row of the [b, n, s, d] side
    const T *src = in + (FWD ? (size_t)bsn * d : bns);
    T *dst = out + (FWD ? bns : (size_t)bsn * d);
    float a1[V], a2[V], c1[V], c2[V], s1[V], s2[V];
    ld<T, V>(src + c, a1);
    ld<T, V>(src + half + c, a2);
    ld<T, V>(cs + (size_t)si * d + c, c1);
    ld<T, V>(cs + (size_t)si * d + half + c, c2);
    ld<T, V>(sn + (size_t)si * d + c, s1);
    ld<T, V>(sn + (size_t)si * d + half + c, s2);
    float o1[V], o2[V];
#pragma unroll
    for (int k = 0; k < V; k++) {
      if (FWD) {
        o1[k] = a1[k] * c1[k] - a2[k] * s1[k];
        o2[k] = a2[k] * c2[k] + a1[k] * s2[k];
      } else {
        o1[k] = a1[k] * c1[k] + a2[k] * s2[k];
        o2[k] = a2[k] * c2[k] - a1[k] * s1[k];
      }
    }
    st<T, V>(dst + c, o1);
    st<T, V>(dst + half + c, o2);
  }
}

#define ROPE(S, T)                                                                                \
  extern "C" __global__ void rope_fwd_##S(const T *x, const T *cs, const T *sn, T *y, int s,     \
                                          int n, int d, unsigned long long items, int vec) {     \
    if (vec) rope_k<T, Vw<T>::value, true>(x, cs, sn, y, s, n, d, items);                        \
    else rope_k<T, 1, true>(x, cs, sn, y, s, n, d, items);                                        \
  }                                                                                               \
  extern "C" __global__ void rope_bwd_##S(const T *dy, const T *cs, const T *sn, T *dx, int s,   \
                                          int n, int d, unsigned long long items, int vec) {     \
    if (vec) rope_k<T, Vw<T>::value, false>(dy, cs, sn, dx, s, n, d, items);                     \
    else rope_k<T, 1, false>(dy, cs, sn, dx, s, n, d, items);                                     \
  }
ROPE(f32, float)
ROPE(bf16, bf16)

// ---------------------------------------------------------------------------------------------
// SwiGLU, elementwise over `items` chunks of V elements. Forward h = g / (1 + e^-g) * u.
// Backward: sig = 1 / (1 + e^-g), dg = dh u sig (1 + g (1 - sig)), du = dh g sig.
template <typename T, int V>
__device__ void swiglu_f(const T *__restrict__ g, const T *__restrict__ u, T *__restrict__ h,
                         size_t items) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < items;
       i += (size_t)gridDim.x * blockDim.x) {
    float a[V], b[V];
    ld<T, V>(g + i * V, a);
    ld<T, V>(u + i * V, b);
#pragma unroll
    for (int k = 0; k < V; k++) a[k] = __fdividef(a[k], 1.0f + __expf(-a[k])) * b[k];
    st<T, V>(h + i * V, a);
  }
}

template <typename T, int V>
__device__ void swiglu_b(const T *__restrict__ dh, const T *__restrict__ g,
                         const T *__restrict__ u, T *__restrict__ dg, T *__restrict__ du,
                         size_t items) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < items;
       i += (size_t)gridDim.x * blockDim.x) {
    float e[V], a[V], b[V], og[V], ou[V];
    ld<T, V>(dh + i * V, e);
    ld<T, V>(g + i * V, a);
    ld<T, V>(u + i * V, b);
#pragma unroll
    for (int k = 0; k < V; k++) {
      const float sig = __fdividef(1.0f, 1.0f + __expf(-a[k]));
      og[k] = e[k] * b[k] * (sig * (a[k] * (1.0f - sig) + 1.0f));
      ou[k] = e[k] * (a[k] * sig);
    }
    st<T, V>(dg + i * V, og);
    st<T, V>(du + i * V, ou);
  }
}

#define SWIGLU(S, T)                                                                              \
  extern "C" __global__ void swiglu_fwd_##S(const T *g, const T *u, T *h,                        \
                                            unsigned long long n, int vec) {                      \
    if (vec) swiglu_f<T, Vw<T>::value>(g, u, h, n / Vw<T>::value);                                \
    else swiglu_f<T, 1>(g, u, h, n);                                                              \
  }                                                                                               \
  extern "C" __global__ void swiglu_bwd_##S(const T *dh, const T *g, const T *u, T *dg, T *du,   \
                                            unsigned long long n, int vec) {                      \
    if (vec) swiglu_b<T, Vw<T>::value>(dh, g, u, dg, du, n / Vw<T>::value);                       \
    else swiglu_b<T, 1>(dh, g, u, dg, du, n);                                                     \
  }
SWIGLU(f32, float)
SWIGLU(bf16, bf16)

// ---------------------------------------------------------------------------------------------
// Row chunks shared by the softmax and cross-entropy kernels. A thread at position `pos` of a
// group of `w` threads (a warp: w = 32; a block: w = blockDim.x) owns chunk i of a row: V
// elements from column (i w + pos) V. With CH > 0 the thread holds its CH chunks in registers as
// raw 16-byte vectors (V = one vector; the row must fit: CH w V >= its length), so a kernel reads
// the row from global memory once; with CH = 0 every pass reads it again (any length, V = 1 or
// one vector).
template <typename T, int V, int CH> struct RowChunks {
  uint4 raw[CH > 0 ? CH : 1];
  // Issues the loads of the chunks starting before `bound` (CH > 0; nothing otherwise).
  __device__ __forceinline__ void fetch(const T *row, int w, int pos, int bound) {
    if constexpr (CH > 0) {
#pragma unroll
      for (int i = 0; i < CH; i++) {
        const int c = (i * w + pos) * V;
        if (c < bound) raw[i] = *reinterpret_cast<const uint4 *>(row + c);
      }
    }
  }
  // Chunk i (first column c) as f32.
  __device__ __forceinline__ void get(const T *row, int i, int c, float *a) const {
    if constexpr (CH > 0) unpack<T>(raw[i], a);
    else ld<T, V>(row + c, a);
  }
};

// Calls f(i, c) for the thread's chunks i whose first column c is below `bound`.
template <int CH, int V, typename F>
__device__ __forceinline__ void for_chunks(int w, int pos, int bound, F f) {
  if constexpr (CH > 0) {
#pragma unroll
    for (int i = 0; i < CH; i++) {
      const int c = (i * w + pos) * V;
      if (c < bound) f(i, c);
    }
  } else {
    for (int i = 0, c = pos * V; c < bound; i++, c += w * V) f(i, c);
  }
}

// ---------------------------------------------------------------------------------------------
// Causal softmax over rows of length s: one warp per row. Row R has query position q = R % s and
// batch index R / rows_per_batch; key j is allowed when j <= q and (no mask or mask[b, j] != 0).
// Keys past q are never read: the forward writes 0 there, the backward too (P is 0 there).
// Forward: P = exp(scale x - m) / l over allowed keys (online max/sum in one pass, then one pass
// writing), a row with no allowed key is 0. Backward: dS = P (dP - sum_j dP_j P_j) scale.

// The V scores from column c: allowed ones scaled, the others -inf.
template <int V>
__device__ __forceinline__ void sm_mask_scale(float *a, int c, int lim, const float *mk,
                                              float scale) {
#pragma unroll
  for (int k = 0; k < V; k++) {
    const int j = c + k;
    const bool ok = j < lim && (!mk || mk[j] != 0.f);
    a[k] = ok ? a[k] * scale : -INFINITY;
  }
}

template <typename T, int V, int CH>
__device__ void softmax_f(const T *__restrict__ x, const float *__restrict__ mask,
                          T *__restrict__ y, size_t rows, int s, size_t rows_per_batch,
                          float scale) {
  const int lane = threadIdx.x & 31;
  const size_t nwarps = ((size_t)gridDim.x * blockDim.x) >> 5;
  for (size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < rows;
       row += nwarps) {
    const int lim = (int)(row % s) + 1; // keys [0, lim)
    const float *mk = mask ? mask + (row / rows_per_batch) * s : nullptr;
    const T *xr = x + row * s;
    T *yr = y + row * s;
    RowChunks<T, V, CH> rc;
    rc.fetch(xr, 32, lane, lim);
    float m = -INFINITY, l = 0.f;
    for_chunks<CH, V>(32, lane, lim, [&](int i, int c) {
      float a[V];
      rc.get(xr, i, c, a);
      sm_mask_scale<V>(a, c, lim, mk, scale);
      ms_add<V>(m, l, a);
    });
    warp_ms(m, l);
    const float inv = l > 0.f ? 1.0f / l : 0.f;
    for_chunks<CH, V>(32, lane, s, [&](int i, int c) {
      float a[V];
      if (c < lim) {
        rc.get(xr, i, c, a);
        sm_mask_scale<V>(a, c, lim, mk, scale);
#pragma unroll
        for (int k = 0; k < V; k++) a[k] = a[k] == -INFINITY ? 0.f : __expf(a[k] - m) * inv;
      } else {
#pragma unroll
        for (int k = 0; k < V; k++) a[k] = 0.f;
      }
      st<T, V>(yr + c, a);
    });
  }
}

template <typename T, int V, int CH>
__device__ void softmax_b(const T *__restrict__ dp, const T *__restrict__ p,
                          T *__restrict__ ds, size_t rows, int s, float scale) {
  const int lane = threadIdx.x & 31;
  const size_t nwarps = ((size_t)gridDim.x * blockDim.x) >> 5;
  for (size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < rows;
       row += nwarps) {
    const int lim = (int)(row % s) + 1;
    const T *dpr = dp + row * s;
    const T *pr = p + row * s;
    T *dsr = ds + row * s;
    RowChunks<T, V, CH> ra, rb;
    ra.fetch(dpr, 32, lane, lim);
    rb.fetch(pr, 32, lane, lim);
    float dot = 0.f;
    for_chunks<CH, V>(32, lane, lim, [&](int i, int c) {
      float a[V], b[V];
      ra.get(dpr, i, c, a);
      rb.get(pr, i, c, b);
#pragma unroll
      for (int k = 0; k < V; k++)
        if (c + k < lim) dot += a[k] * b[k];
    });
    dot = warp_sum(dot);
    for_chunks<CH, V>(32, lane, s, [&](int i, int c) {
      float a[V], b[V];
      if (c < lim) {
        ra.get(dpr, i, c, a);
        rb.get(pr, i, c, b);
      }
#pragma unroll
      for (int k = 0; k < V; k++) a[k] = c + k < lim ? b[k] * (a[k] - dot) * scale : 0.f;
      st<T, V>(dsr + c, a);
    });
  }
}

// `ch`: 0 = two global passes, 1 or 2 = the row cached in registers (chunks per lane).
#define SOFTMAX(S, T)                                                                             \
  extern "C" __global__ void __launch_bounds__(256, 4) causal_softmax_fwd_##S(                   \
      const T *x, const float *mask, T *y, unsigned long long rows, int s,                       \
      unsigned long long rows_per_batch, float scale, int vec, int ch) {                          \
    constexpr int W = Vw<T>::value;                                                               \
    if (!vec) softmax_f<T, 1, 0>(x, mask, y, rows, s, rows_per_batch, scale);                     \
    else if (ch == 1) softmax_f<T, W, 1>(x, mask, y, rows, s, rows_per_batch, scale);             \
    else if (ch == 2) softmax_f<T, W, 2>(x, mask, y, rows, s, rows_per_batch, scale);             \
    else softmax_f<T, W, 0>(x, mask, y, rows, s, rows_per_batch, scale);                          \
  }                                                                                               \
  extern "C" __global__ void __launch_bounds__(256, 4) causal_softmax_bwd_##S(                   \
      const T *dp, const T *p, T *ds, unsigned long long rows, int s, float scale, int vec,      \
      int ch) {                                                                                   \
    constexpr int W = Vw<T>::value;                                                               \
    if (!vec) softmax_b<T, 1, 0>(dp, p, ds, rows, s, scale);                                      \
    else if (ch == 1) softmax_b<T, W, 1>(dp, p, ds, rows, s, scale);                              \
    else if (ch == 2) softmax_b<T, W, 2>(dp, p, ds, rows, s, scale);                              \
    else softmax_b<T, W, 0>(dp, p, ds, rows, s, scale);                                           \
  }
SOFTMAX(f32, float)
SOFTMAX(bf16, bf16)

// ---------------------------------------------------------------------------------------------
// Cross-entropy with its gradient: one block per row of the vocabulary. Valid rows (target
// < vocab; IGNORE = 0xffffffff is >= vocab): online (max, sum) over the row, then
// loss = log(l) + m - z_t into row_loss[row] and dz = grad_scale (exp(z - m) / l - [j == t]).
// Ignored rows: loss 0, dz = 0, the logits are not read.

// Merges the (m, l) states of the whole block; every thread gets the result.
__device__ void block_ms(float &m, float &l) {
  __shared__ float shm[32], shl[32];
  warp_ms(m, l);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) {
    shm[w] = m;
    shl[w] = l;
  }
  __syncthreads();
  if (w == 0) {
    m = lane < nw ? shm[lane] : -INFINITY;
    l = lane < nw ? shl[lane] : 0.f;
    warp_ms(m, l);
    if (lane == 0) {
      shm[0] = m;
      shl[0] = l;
    }
  }
  __syncthreads();
  m = shm[0];
  l = shl[0];
}

template <typename T, int V, int CH>
__device__ void xent_k(const T *__restrict__ z, const uint32_t *__restrict__ tgt,
                       T *__restrict__ dz, float *__restrict__ row_loss, int vocab,
                       float grad_scale) {
  const size_t row = blockIdx.x;
  const T *zr = z + row * vocab;
  T *dzr = dz + row * vocab;
  const uint32_t t = tgt[row];
  const int nt = blockDim.x, pos = threadIdx.x;
  if (t >= (uint32_t)vocab) {
    for_chunks<0, V>(nt, pos, vocab, [&](int, int c) {
      float o[V];
#pragma unroll
      for (int k = 0; k < V; k++) o[k] = 0.f;
      st<T, V>(dzr + c, o);
    });
    if (pos == 0) row_loss[row] = 0.f;
    return;
  }
  RowChunks<T, V, CH> rc;
  rc.fetch(zr, nt, pos, vocab);
  float m = -INFINITY, l = 0.f;
  for_chunks<CH, V>(nt, pos, vocab, [&](int i, int c) {
    float a[V];
    rc.get(zr, i, c, a);
    ms_add<V>(m, l, a);
  });
  block_ms(m, l);
  if (pos == 0) row_loss[row] = (logf(l) + m) - tof(zr[t]);
  const float inv = 1.0f / l;
  for_chunks<CH, V>(nt, pos, vocab, [&](int i, int c) {
    float a[V];
    rc.get(zr, i, c, a);
#pragma unroll
    for (int k = 0; k < V; k++)
      a[k] = grad_scale * (__expf(a[k] - m) * inv - ((uint32_t)(c + k) == t ? 1.0f : 0.0f));
    st<T, V>(dzr + c, a);
  });
}

// `cached`: the row fits the registers of the block (vector path, 8 chunks per thread).
#define XENT(S, T)                                                                                \
  extern "C" __global__ void __launch_bounds__(512, 2) xent_fwd_bwd_##S(                         \
      const T *z, const uint32_t *tgt, T *dz, float *row_loss, int vocab, float grad_scale,      \
      int vec, int cached) {                                                                      \
    constexpr int W = Vw<T>::value;                                                               \
    if (!vec) xent_k<T, 1, 0>(z, tgt, dz, row_loss, vocab, grad_scale);                           \
    else if (cached) xent_k<T, W, 8>(z, tgt, dz, row_loss, vocab, grad_scale);                    \
    else xent_k<T, W, 0>(z, tgt, dz, row_loss, vocab, grad_scale);                                \
  }
XENT(f32, float)
XENT(bf16, bf16)

// out[0] = sum of x[0..n) (one block, fixed order: deterministic).
extern "C" __global__ void sum_f32(const float *__restrict__ x, float *__restrict__ out,
                                   unsigned long long n) {
  __shared__ float sh[33];
  float s = 0.f;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) out[0] = s;
}
