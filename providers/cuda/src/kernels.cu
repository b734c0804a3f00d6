// oxrt CUDA kernels (f32), compiled once per device by NVRTC (no headers:
// half-precision conversions are PTX instructions).
// Every kernel is a grid-stride loop over its outputs unless noted.

#define MAX_RANK 8
// NVRTC has no math headers: -infinity from its bits.
#define NEG_INF __int_as_float(0xff800000)

// Output dims and, per operand, the element stride of each output axis
// (0 where the operand is broadcast along it).
struct Strides {
    int rank;
    int pad;
    long long dims[MAX_RANK];
    long long a[MAX_RANK];
    long long b[MAX_RANK];
};

__device__ __forceinline__ void offsets(const Strides& s, long long i, long long* oa, long long* ob) {
    long long ra = 0, rb = 0;
    for (int d = s.rank - 1; d >= 0; --d) {
        long long dim = s.dims[d];
        long long c = i % dim;
        i /= dim;
        ra += c * s.a[d];
        rb += c * s.b[d];
    }
    *oa = ra;
    *ob = rb;
}

// Unary ops: codes match `UnaryOp` in elementwise.rs.
__device__ __forceinline__ float unary(int op, float v, float p, float q) {
    switch (op) {
    case 0: return v > 0.0f ? v : 0.0f;                       // Relu
    case 1: return 1.0f / (1.0f + expf(-v));                  // Sigmoid
    case 2: return tanhf(v);                                  // Tanh
    case 3: return expf(v);                                   // Exp
    case 4: return logf(v);                                   // Log
    case 5: return sqrtf(v);                                  // Sqrt
    case 6: return -v;                                        // Neg
    case 7: return fabsf(v);                                  // Abs
    case 8: return erff(v);                                   // Erf
    case 9: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); // Gelu
    case 10: return 1.0f / v;                                 // Reciprocal
    case 11: return v >= 0.0f ? v : v * p;                    // LeakyRelu(alpha)
    case 12: return fminf(fmaxf(v, p), q);                    // Clip(min, max)
    case 13: return fminf(fmaxf(p * v + q, 0.0f), 1.0f);      // HardSigmoid(alpha, beta)
    case 14: return v > 20.0f ? v : log1pf(expf(v));          // Softplus
    case 15: return floorf(v);                                // Floor
    case 16: return ceilf(v);                                 // Ceil
    case 17: return v * fminf(fmaxf(v / 6.0f + 0.5f, 0.0f), 1.0f); // HardSwish
    case 18: return v >= 0.0f ? v : p * expm1f(v);            // Elu(alpha)
    case 19: return 0.5f * v * (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v))); // Gelu tanh
    default: return v;
    }
}

extern "C" __global__ void unary_f32(const float* x, float* y, long long n, int op, float p, float q) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        y[i] = unary(op, x[i], p, q);
    }
}

// Binary ops: codes match `BinaryOp` in elementwise.rs.
__device__ __forceinline__ float binary(int op, float a, float b) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return a / b;
    case 4: return fmaxf(a, b);
    case 5: return fminf(a, b);
    case 6: return powf(a, b);
    default: return a;
    }
}

extern "C" __global__ void binary_f32(const float* a, const float* b, float* y, long long n, int op, Strides s) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long oa, ob;
        offsets(s, i, &oa, &ob);
        y[i] = binary(op, a[oa], b[ob]);
    }
}

// y[i] = x[base + offset_a(i)]: transposes, broadcasts and slices (stride
// table `a`, negative for reversed slices), for any 4-byte element type.
extern "C" __global__ void gather_u32(const unsigned int* x, unsigned int* y, long long n, long long base, Strides s) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long oa, ob;
        offsets(s, i, &oa, &ob);
        y[i] = x[base + oa];
    }
}

// Concat: one input's `outer` blocks of `chunk` values into the output,
// whose blocks are `dst_stride` apart, starting at `dst_offset`.
extern "C" __global__ void concat_u32(const unsigned int* x, unsigned int* y, long long outer, long long chunk,
                                      long long dst_stride, long long dst_offset) {
    long long n = outer * chunk;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        y[(i / chunk) * dst_stride + dst_offset + i % chunk] = x[i];
    }
}

// Gather along an axis: y[o][j][r] = x[o][idx[j]][r] for `outer` blocks,
// `count` indices (already checked and made non-negative) and `inner`
// values per index, 4-byte elements.
extern "C" __global__ void gather_axis_u32(const unsigned int* x, const long long* idx, unsigned int* y,
                                           long long outer, long long axis_len, long long count, long long inner) {
    long long n = outer * count * inner;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long r = i % inner;
        long long j = (i / inner) % count;
        long long o = i / (inner * count);
        y[i] = x[(o * axis_len + idx[j]) * inner + r];
    }
}

// Reductions: each output walks its reduced positions. `kept` maps an
// output index to its input offset (table `a`), `red` a reduced index to
// its offset from there. op: 0 sum, 1 mean, 2 max, 3 min, 4 sum of
// squares, 5 L1, 6 L2, 7 log-sum-exp.
extern "C" __global__ void reduce_f32(const float* x, float* y, long long n_out, long long n_red, int op,
                                      Strides kept, Strides red) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n_out;
         i += (long long)gridDim.x * blockDim.x) {
        long long base, unused;
        offsets(kept, i, &base, &unused);
        float acc = op == 2 ? NEG_INF : (op == 3 ? -NEG_INF : 0.0f);
        float m = NEG_INF;
        if (op == 7) {
            for (long long j = 0; j < n_red; ++j) {
                long long o, u;
                offsets(red, j, &o, &u);
                m = fmaxf(m, x[base + o]);
            }
        }
        for (long long j = 0; j < n_red; ++j) {
            long long o, u;
            offsets(red, j, &o, &u);
            float v = x[base + o];
            switch (op) {
            case 2: acc = fmaxf(acc, v); break;
            case 3: acc = fminf(acc, v); break;
            case 4: case 6: acc += v * v; break;
            case 5: acc += fabsf(v); break;
            case 7: acc += expf(v - m); break;
            default: acc += v;
            }
        }
        if (op == 1) acc /= (float)n_red;
        if (op == 6) acc = sqrtf(acc);
        if (op == 7) acc = m + logf(acc);
        y[i] = acc;
    }
}

// LayerNormalization over rows of `len` values: one block of 256 threads
// per row; y = (x - mean) / sqrt(var + eps) * scale[j] (+ bias[j]).
extern "C" __global__ void layer_norm_f32(const float* x, const float* scale, const float* bias, float* y,
                                          long long rows, long long len, float eps, int has_bias) {
    __shared__ float red[256];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * len;
        float* yr = y + r * len;
        float s = 0.0f;
        for (long long j = threadIdx.x; j < len; j += blockDim.x) s += xr[j];
        red[threadIdx.x] = s;
        __syncthreads();
        for (int w = blockDim.x / 2; w > 0; w >>= 1) {
            if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
            __syncthreads();
        }
        float mean = red[0] / (float)len;
        __syncthreads();
        float q = 0.0f;
        for (long long j = threadIdx.x; j < len; j += blockDim.x) {
            float d = xr[j] - mean;
            q += d * d;
        }
        red[threadIdx.x] = q;
        __syncthreads();
        for (int w = blockDim.x / 2; w > 0; w >>= 1) {
            if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
            __syncthreads();
        }
        float inv = rsqrtf(red[0] / (float)len + eps);
        __syncthreads();
        for (long long j = threadIdx.x; j < len; j += blockDim.x) {
            float v = (xr[j] - mean) * inv * scale[j];
            yr[j] = has_bias ? v + bias[j] : v;
        }
    }
}

// Casts between the device element types: mode 0 f32 -> f16, 1 f16 ->
// f32, 2 i64 -> f32, 3 i32 -> f32, 4 f32 -> i64 (toward zero), 5 f32 ->
// i32, 6 u8/bool -> f32, 7 f32 -> bool.
extern "C" __global__ void cast_any(const void* x, void* y, long long n, int mode) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        switch (mode) {
        case 0: {
            unsigned short h;
            asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(((const float*)x)[i]));
            ((unsigned short*)y)[i] = h;
            break;
        }
        case 1: {
            float f;
            asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(((const unsigned short*)x)[i]));
            ((float*)y)[i] = f;
            break;
        }
        case 2: ((float*)y)[i] = (float)((const long long*)x)[i]; break;
        case 3: ((float*)y)[i] = (float)((const int*)x)[i]; break;
        case 4: ((long long*)y)[i] = (long long)((const float*)x)[i]; break;
        case 5: ((int*)y)[i] = (int)((const float*)x)[i]; break;
        case 6: ((float*)y)[i] = ((const unsigned char*)x)[i] ? 1.0f : 0.0f; break;
        case 7: ((unsigned char*)y)[i] = ((const float*)x)[i] != 0.0f; break;
        }
    }
}

// Softmax (or LogSoftmax) over rows of `len` contiguous values: one block
// of 256 threads per row, max and sum reduced in shared memory.
extern "C" __global__ void softmax_f32(const float* x, float* y, long long rows, long long len, int log_out) {
    __shared__ float red[256];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * len;
        float* yr = y + r * len;
        float m = NEG_INF;
        for (long long j = threadIdx.x; j < len; j += blockDim.x) m = fmaxf(m, xr[j]);
        red[threadIdx.x] = m;
        __syncthreads();
        for (int w = blockDim.x / 2; w > 0; w >>= 1) {
            if (threadIdx.x < w) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + w]);
            __syncthreads();
        }
        m = red[0];
        __syncthreads();
        float sum = 0.0f;
        for (long long j = threadIdx.x; j < len; j += blockDim.x) sum += expf(xr[j] - m);
        red[threadIdx.x] = sum;
        __syncthreads();
        for (int w = blockDim.x / 2; w > 0; w >>= 1) {
            if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
            __syncthreads();
        }
        sum = red[0];
        __syncthreads();
        for (long long j = threadIdx.x; j < len; j += blockDim.x) {
            float e = xr[j] - m;
            yr[j] = log_out ? e - logf(sum) : expf(e) / sum;
        }
    }
}

// Window geometry of a 2-D convolution or pooling.
struct Window {
    int c, h, w;        // input channels (per group for im2col), rows, columns
    int oh, ow;         // output rows, columns
    int kh, kw;         // kernel
    int sh, sw;         // strides
    int ph, pw;         // leading pads
    int dh, dw;         // dilations
};

// col[(ch * kh + ky) * kw + kx][oy * ow + ox] = x[ch][iy][ix] (0 in padding)
// for one image's channel group.
extern "C" __global__ void im2col_f32(const float* x, float* col, Window g) {
    long long total = (long long)g.c * g.kh * g.kw * g.oh * g.ow;
    long long plane = (long long)g.oh * g.ow;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long row = i / plane;
        long long o = i % plane;
        int kx = row % g.kw;
        int ky = (row / g.kw) % g.kh;
        int ch = row / ((long long)g.kw * g.kh);
        int oy = o / g.ow, ox = o % g.ow;
        int iy = oy * g.sh + ky * g.dh - g.ph;
        int ix = ox * g.sw + kx * g.dw - g.pw;
        float v = 0.0f;
        if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) v = x[((long long)ch * g.h + iy) * g.w + ix];
        col[i] = v;
    }
}

// 2-D pooling over `planes` planes: mode 0 max, 1 average counting the
// padding, 2 average over the valid taps only.
extern "C" __global__ void pool2d_f32(const float* x, float* y, long long planes, Window g, int mode) {
    long long per = (long long)g.oh * g.ow;
    long long total = planes * per;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long p = i / per;
        int oy = (i % per) / g.ow, ox = (i % per) % g.ow;
        const float* xp = x + p * g.h * g.w;
        float best = NEG_INF, sum = 0.0f;
        int valid = 0;
        for (int ky = 0; ky < g.kh; ++ky) {
            int iy = oy * g.sh + ky * g.dh - g.ph;
            for (int kx = 0; kx < g.kw; ++kx) {
                int ix = ox * g.sw + kx * g.dw - g.pw;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                float v = xp[iy * g.w + ix];
                best = v > best ? v : best;
                sum += v;
                ++valid;
            }
        }
        if (mode == 0) y[i] = best;
        else if (mode == 1) y[i] = sum / (float)(g.kh * g.kw);
        else y[i] = valid > 0 ? sum / (float)valid : 0.0f;
    }
}

// y = x * scale[c] + shift[c] for NCHW-like data with `inner` values per
// channel (BatchNormalization in inference, folded on the host).
extern "C" __global__ void channel_affine_f32(const float* x, const float* scale, const float* shift, float* y,
                                              long long n, long long channels, long long inner) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long c = (i / inner) % channels;
        y[i] = x[i] * scale[c] + shift[c];
    }
}
