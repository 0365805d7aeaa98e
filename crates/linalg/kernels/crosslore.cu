// CUDA kernels of crosslore (compiled to PTX by crates/linalg/build.rs with nvcc, feature `cuda`;
// loaded through candle's custom-module cache; Rust wrappers in crates/linalg/src/kernels.rs).
// Every kernel has a CPU twin in the Rust code and a CUDA-vs-CPU check in `crosslore-bench
// gpu-check`. bf16 is handled as raw 16-bit words (round-to-nearest-even, as the `half` crate).
#include <stdint.h>

typedef unsigned short bf16_t;

__device__ __forceinline__ float bf16_to_f32(bf16_t h) { return __uint_as_float(((unsigned)h) << 16); }

__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

__device__ __forceinline__ float load_f(const float* p, uint64_t i) { return p[i]; }
__device__ __forceinline__ float load_f(const bf16_t* p, uint64_t i) { return bf16_to_f32(p[i]); }
__device__ __forceinline__ void store_f(float* p, uint64_t i, float x) { p[i] = x; }
__device__ __forceinline__ void store_f(bf16_t* p, uint64_t i, float x) { p[i] = f32_to_bf16(x); }

// ---- counter-based normal stream (crates/linalg/src/rng.rs `counter_normal`) ----
#define GOLDEN 0x9E3779B97F4A7C15ull

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ uint64_t splitmix_at(uint64_t key, uint64_t j) { return mix64(key + (j + 1) * GOLDEN); }

// out[i] = counter_normal(key, i), i < n. f64 Box-Muller, cosine branch, rounded to f32.
extern "C" __global__ void counter_normal_f32(float* out, uint64_t key, uint64_t n) {
    const double scale = 1.0 / 9007199254740992.0; // 2^-53
    const double two_pi = 6.283185307179586;       // 2 * std::f64::consts::PI
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
         i += (uint64_t)gridDim.x * blockDim.x) {
        uint64_t h1 = splitmix_at(key, 2 * i), h2 = splitmix_at(key, 2 * i + 1);
        double u1 = (double)((h1 >> 11) + 1) * scale;
        double u2 = (double)(h2 >> 11) * scale;
        double a = two_pi * u2;
        out[i] = (float)(sqrt(-2.0 * log(u1)) * cos(a));
    }
}

// ---- finiteness flag: *flag = 1 if any x[i] is NaN or +-Inf ----
template <typename T>
__device__ void nonfinite_impl(const T* x, uint64_t n, int* flag) {
    int bad = 0;
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
         i += (uint64_t)gridDim.x * blockDim.x) {
        float v = load_f(x, i);
        bad |= !isfinite(v);
    }
    bad = __syncthreads_or(bad);
    if (bad && threadIdx.x == 0) atomicOr(flag, 1);
}
extern "C" __global__ void nonfinite_f32(const float* x, uint64_t n, int* flag) { nonfinite_impl(x, n, flag); }
extern "C" __global__ void nonfinite_bf16(const bf16_t* x, uint64_t n, int* flag) { nonfinite_impl(x, n, flag); }

// ---- sum of squares, deterministic two-pass: partial[blockIdx.x] = sum of this block's x[i]^2 ----
// Fixed grid (SQSUM_BLOCKS blocks of 256 threads, set by the Rust wrapper): each thread sums its
// grid-stride entries in f32, the block reduces by warp shuffles in a fixed order; the partials of
// every tensor are summed in f64, in block order, by sqsum_final. Same bits on every run.
template <typename T>
__device__ void sqsum_partial_impl(const T* x, uint64_t n, float* partial) {
    float acc = 0.f;
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
         i += (uint64_t)gridDim.x * blockDim.x) {
        float v = load_f(x, i);
        acc = fmaf(v, v, acc);
    }
    __shared__ float warp_sums[32];
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < (int)(blockDim.x >> 5) ? warp_sums[lane] : 0.f;
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
        if (lane == 0) partial[blockIdx.x] = acc;
    }
}
extern "C" __global__ void sqsum_partial_f32(const float* x, uint64_t n, float* partial) { sqsum_partial_impl(x, n, partial); }
extern "C" __global__ void sqsum_partial_bf16(const bf16_t* x, uint64_t n, float* partial) { sqsum_partial_impl(x, n, partial); }

// out[t] = sum_b partial[t * blocks + b] in f64, b in order; one thread per tensor.
extern "C" __global__ void sqsum_final(const float* partial, uint32_t blocks, uint32_t tensors, double* out) {
    uint32_t t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= tensors) return;
    double s = 0.0;
    for (uint32_t b = 0; b < blocks; ++b) s += (double)partial[(uint64_t)t * blocks + b];
    out[t] = s;
}

// ---- AdamW, torch.optim.AdamW's single-tensor formula (crates/optim/src/adamw.rs) ----
// w *= decay; m += (g - m) * omb1; v = b2 v + omb2 g^2; w -= step * m / (sqrt(v) * inv_sqrt_bc2 + eps)
template <typename T>
__device__ void adamw_impl(T* w, const T* g, float* m, float* v, uint64_t n, float decay, float omb1,
                           float b2, float omb2, float step, float inv_sqrt_bc2, float eps) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
         i += (uint64_t)gridDim.x * blockDim.x) {
        float gi = load_f(g, i);
        float mi = m[i] + (gi - m[i]) * omb1;
        float vi = b2 * v[i] + omb2 * (gi * gi);
        float wi = load_f(w, i) * decay;
        wi -= step * (mi / (sqrtf(vi) * inv_sqrt_bc2 + eps));
        m[i] = mi;
        v[i] = vi;
        store_f(w, i, wi);
    }
}
extern "C" __global__ void adamw_f32(float* w, const float* g, float* m, float* v, uint64_t n, float decay,
                                     float omb1, float b2, float omb2, float step, float inv_sqrt_bc2, float eps) {
    adamw_impl(w, g, m, v, n, decay, omb1, b2, omb2, step, inv_sqrt_bc2, eps);
}
extern "C" __global__ void adamw_bf16(bf16_t* w, const bf16_t* g, float* m, float* v, uint64_t n, float decay,
                                      float omb1, float b2, float omb2, float step, float inv_sqrt_bc2, float eps) {
    adamw_impl(w, g, m, v, n, decay, omb1, b2, omb2, step, inv_sqrt_bc2, eps);
}

// ---- sampled product: out[l] = sum_t a[i, t] b[j, t], i = idx[l] / n, j = idx[l] % n ----
// One warp per index; a: [m, r], b: [n, r] row-major f32.
__device__ __forceinline__ float sampled_dot(const float* a, const float* b, uint32_t flat, uint32_t n,
                                             uint32_t r, int lane) {
    uint64_t i = flat / n, j = flat % n;
    const float* ar = a + i * r;
    const float* br = b + j * r;
    float s = 0.f;
    for (uint32_t t = lane; t < r; t += 32) s += ar[t] * br[t];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    return s; // valid in lane 0
}

extern "C" __global__ void sampled_product_f32(const float* a, const float* b, const uint32_t* idx, float* out,
                                               uint64_t len, uint32_t n, uint32_t r) {
    int lane = threadIdx.x & 31;
    uint64_t warp = (blockIdx.x * (uint64_t)blockDim.x + threadIdx.x) >> 5;
    uint64_t warps = ((uint64_t)gridDim.x * blockDim.x) >> 5;
    for (uint64_t l = warp; l < len; l += warps) {
        float s = sampled_dot(a, b, idx[l], n, r, lane);
        if (lane == 0) out[l] = s;
    }
}

// ---- CrossLore residual, TrackedMoments step (crates/optim/src/residual.rs `update_tracked`) ----
// g_l = g[idx[l]]; dm = b1 dm + omb1 g_l; dv = b2 dv + omb2 g_l^2;
// low = sum_t a[i,t] b[j,t] (the thin factors of project_back(M'/(sqrt(V')+eps)));
// delta = step * (dm / (sqrt(dv) + eps) - low)
template <typename T>
__device__ void residual_tracked_impl(const T* g, const uint32_t* idx, float* dm, float* dv, float* delta,
                                      const float* a, const float* b, uint64_t len, uint32_t n, uint32_t r,
                                      float b1, float omb1, float b2, float omb2, float eps, float step) {
    int lane = threadIdx.x & 31;
    uint64_t warp = (blockIdx.x * (uint64_t)blockDim.x + threadIdx.x) >> 5;
    uint64_t warps = ((uint64_t)gridDim.x * blockDim.x) >> 5;
    for (uint64_t l = warp; l < len; l += warps) {
        uint32_t flat = idx[l];
        float low = sampled_dot(a, b, flat, n, r, lane);
        if (lane == 0) {
            float gl = load_f(g, flat);
            float m = b1 * dm[l] + omb1 * gl;
            float v = b2 * dv[l] + omb2 * (gl * gl);
            dm[l] = m;
            dv[l] = v;
            delta[l] = step * (m / (sqrtf(v) + eps) - low);
        }
    }
}
extern "C" __global__ void residual_tracked_f32(const float* g, const uint32_t* idx, float* dm, float* dv,
                                                float* delta, const float* a, const float* b, uint64_t len,
                                                uint32_t n, uint32_t r, float b1, float omb1, float b2,
                                                float omb2, float eps, float step) {
    residual_tracked_impl(g, idx, dm, dv, delta, a, b, len, n, r, b1, omb1, b2, omb2, eps, step);
}
extern "C" __global__ void residual_tracked_bf16(const bf16_t* g, const uint32_t* idx, float* dm, float* dv,
                                                 float* delta, const float* a, const float* b, uint64_t len,
                                                 uint32_t n, uint32_t r, float b1, float omb1, float b2,
                                                 float omb2, float eps, float step) {
    residual_tracked_impl(g, idx, dm, dv, delta, a, b, len, n, r, b1, omb1, b2, omb2, eps, step);
}

// ---- w[idx[l]] += T(-coef * delta[l]) (distinct indices; as candle's scatter_add of the cast
// increment: the increment is rounded to w's dtype first, then added) ----
template <typename T>
__device__ void scatter_sub_impl(T* w, const uint32_t* idx, const float* delta, uint64_t len, float coef) {
    for (uint64_t l = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; l < len;
         l += (uint64_t)gridDim.x * blockDim.x) {
        uint32_t i = idx[l];
        T inc;
        store_f(&inc, 0, -coef * delta[l]);
        store_f(w, i, load_f(w, i) + load_f(&inc, 0));
    }
}
extern "C" __global__ void scatter_sub_f32(float* w, const uint32_t* idx, const float* delta, uint64_t len,
                                           float coef) {
    scatter_sub_impl(w, idx, delta, len, coef);
}
extern "C" __global__ void scatter_sub_bf16(bf16_t* w, const uint32_t* idx, const float* delta, uint64_t len,
                                            float coef) {
    scatter_sub_impl(w, idx, delta, len, coef);
}

// ---- low-rank step commit: w = (w - c * u) * d, u = project_back(N) (dense, w's dtype) ----
// (crates/optim/src/galore.rs `Advanced::commit`: W - step*scale*project_back(N), then decay)
template <typename T>
__device__ void lowrank_update_impl(T* w, const T* u, uint64_t n, float c, float d) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
         i += (uint64_t)gridDim.x * blockDim.x) {
        store_f(w, i, (load_f(w, i) - c * load_f(u, i)) * d);
    }
}
extern "C" __global__ void lowrank_update_f32(float* w, const float* u, uint64_t n, float c, float d) {
    lowrank_update_impl(w, u, n, c, d);
}
extern "C" __global__ void lowrank_update_bf16(bf16_t* w, const bf16_t* u, uint64_t n, float c, float d) {
    lowrank_update_impl(w, u, n, c, d);
}

// ---- low-rank Adam moments (crates/optim/src/galore.rs `advance`), out of place, f32 ----
// m1 = b1 m + omb1 r; v1 = b2 v + omb2 r^2; n = m1 / (sqrt(v1) + eps)
extern "C" __global__ void lowrank_adam_f32(const float* r, const float* m, const float* v, float* m1,
                                            float* v1, float* nn, uint64_t n, float b1, float omb1,
                                            float b2, float omb2, float eps) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
         i += (uint64_t)gridDim.x * blockDim.x) {
        float ri = r[i];
        float mi = b1 * m[i] + omb1 * ri;
        float vi = b2 * v[i] + omb2 * (ri * ri);
        m1[i] = mi;
        v1[i] = vi;
        nn[i] = mi / (sqrtf(vi) + eps);
    }
}

// ---- exact top-k of |x| by flat index (crates/linalg/src/topk.rs, src/topk_cuda.rs) ----
// Key: bits(|v|) + 1 for non-NaN v (monotone in |v|), 0 for NaN; ranked by (key desc, index asc).
// Radix select of the threshold key T (two 65536-bin histograms, host picks the bins), then a
// stable compaction that writes, in index order, every key > T and the first `need` keys == T.
#define TOPK_NONE 0xffffffffu

__device__ __forceinline__ uint32_t topk_key(float v) {
    uint32_t u = __float_as_uint(v) & 0x7fffffffu;
    return u > 0x7f800000u ? 0u : u + 1u;
}

// hist[bin] += number of lanes of this warp with this bin (bin TOPK_NONE: no element).
__device__ __forceinline__ void topk_warp_count(uint32_t* hist, uint32_t bin, int lane) {
    uint32_t peers = __match_any_sync(0xffffffffu, bin);
    if (bin != TOPK_NONE && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (uint32_t)__popc(peers));
}

// hist[key >> 16] counts (hist: 65536 zeroed u32). Warp-uniform loop (blockDim a multiple of 32).
extern "C" __global__ void topk_hist_hi_f32(const float* x, uint64_t n, uint32_t* hist) {
    int lane = threadIdx.x & 31;
    uint64_t warp = (blockIdx.x * (uint64_t)blockDim.x + threadIdx.x) >> 5;
    uint64_t warps = ((uint64_t)gridDim.x * blockDim.x) >> 5;
    for (uint64_t base = warp * 32; base < n; base += warps * 32) {
        uint64_t i = base + lane;
        topk_warp_count(hist, i < n ? topk_key(x[i]) >> 16 : TOPK_NONE, lane);
    }
}

// hist[key & 0xffff] counts among the keys with key >> 16 == hi (hist: 65536 zeroed u32).
extern "C" __global__ void topk_hist_lo_f32(const float* x, uint64_t n, uint32_t hi, uint32_t* hist) {
    int lane = threadIdx.x & 31;
    uint64_t warp = (blockIdx.x * (uint64_t)blockDim.x + threadIdx.x) >> 5;
    uint64_t warps = ((uint64_t)gridDim.x * blockDim.x) >> 5;
    for (uint64_t base = warp * 32; base < n; base += warps * 32) {
        uint64_t i = base + lane;
        uint32_t bin = TOPK_NONE;
        if (i < n) {
            uint32_t key = topk_key(x[i]);
            if ((key >> 16) == hi) bin = key & 0xffffu;
        }
        topk_warp_count(hist, bin, lane);
    }
}

// [start, end) of block b's chunk.
__device__ __forceinline__ void topk_chunk(uint64_t n, uint64_t chunk, uint64_t* start, uint64_t* end) {
    uint64_t s = blockIdx.x * chunk;
    *start = s < n ? s : n;
    *end = s + chunk < n ? s + chunk : n;
}

// gt[b], eq[b] = number of keys > thr, == thr in block b's chunk. Block: 256 threads or fewer.
extern "C" __global__ void topk_block_counts_f32(const float* x, uint64_t n, uint64_t chunk, uint32_t thr,
                                                 uint32_t* gt, uint32_t* eq) {
    __shared__ uint32_t sg[32], se[32];
    uint64_t start, end;
    topk_chunk(n, chunk, &start, &end);
    uint32_t g = 0, e = 0;
    for (uint64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
        uint32_t key = topk_key(x[i]);
        g += key > thr;
        e += key == thr;
    }
    for (int o = 16; o > 0; o >>= 1) {
        g += __shfl_down_sync(0xffffffffu, g, o);
        e += __shfl_down_sync(0xffffffffu, e, o);
    }
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    if (lane == 0) {
        sg[wid] = g;
        se[wid] = e;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        uint32_t G = 0, E = 0;
        for (int w = 0; w < nw; ++w) {
            G += sg[w];
            E += se[w];
        }
        gt[blockIdx.x] = G;
        eq[blockIdx.x] = E;
    }
}

// Stable compaction: block b walks its chunk in tiles of blockDim (a multiple of 32) elements; a
// block-wide exclusive scan of the packed pair (key > thr) << 32 | (key == thr) gives each
// element gt_before / eq_before (counts at smaller flat indices, from the block bases gt_base[b],
// eq_base[b]). Selected: key > thr, or key == thr with eq_before < need; written to
// out[gt_before + min(eq_before, need)] (topk.rs `out_slot`), so out is sorted by index.
extern "C" __global__ void topk_write_f32(const float* x, uint64_t n, uint64_t chunk, uint32_t thr, uint32_t need,
                                          const uint32_t* gt_base, const uint32_t* eq_base, uint32_t* out) {
    __shared__ unsigned long long warp_incl[32];
    const unsigned full = 0xffffffffu;
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    uint64_t start, end;
    topk_chunk(n, chunk, &start, &end);
    uint64_t gt_run = gt_base[blockIdx.x], eq_run = eq_base[blockIdx.x];
    for (uint64_t t0 = start; t0 < end; t0 += blockDim.x) {
        uint64_t i = t0 + threadIdx.x;
        bool g = false, e = false;
        if (i < end) {
            uint32_t key = topk_key(x[i]);
            g = key > thr;
            e = key == thr;
        }
        unsigned long long v = ((unsigned long long)g << 32) | (unsigned long long)e;
        unsigned long long incl = v;
        for (int o = 1; o < 32; o <<= 1) {
            unsigned long long y = __shfl_up_sync(full, incl, o);
            if (lane >= o) incl += y;
        }
        if (lane == 31) warp_incl[wid] = incl;
        __syncthreads();
        if (wid == 0) {
            unsigned long long w = lane < nw ? warp_incl[lane] : 0ull;
            for (int o = 1; o < 32; o <<= 1) {
                unsigned long long y = __shfl_up_sync(full, w, o);
                if (lane >= o) w += y;
            }
            if (lane < nw) warp_incl[lane] = w; // inclusive over the warps of the tile
        }
        __syncthreads();
        unsigned long long before = incl - v + (wid > 0 ? warp_incl[wid - 1] : 0ull);
        unsigned long long total = warp_incl[nw - 1];
        uint64_t gb = gt_run + (before >> 32), eb = eq_run + (before & 0xffffffffull);
        if (g || (e && eb < need)) out[gb + (eb < need ? eb : (uint64_t)need)] = (uint32_t)i;
        gt_run += total >> 32;
        eq_run += total & 0xffffffffull;
        __syncthreads(); // warp_incl is rewritten by the next tile
    }
}
