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
