/* NeuroAda's CPU kernels, compiled once per machine by methods/_kernels.py (see methods/_sparse_ops.py
   for the Python side and the torch fallbacks, methods/neuroada.py for the method).

   - neuroada_put_rows: W[i, idx[i, j]] = src[i, j], the scattered writes of the W + S patch;
   - neuroada_grad_gather (small k) and neuroada_grad_sddmm (larger k): the fp32 value gradient
     grad[i, j] = sum_n g[n, i] * x[n, idx[i, j]] without a dense d_out x d_in tensor.

   torch has no fused gather-multiply-reduce, and its sampled_addmm needs g^T and x^T made contiguous
   first: on a 2048x768 layer with 1024 tokens (1 thread, best of 15, 3 runs on this project's Xeon)
   these kernels take 0.67-0.79 ms at k=1 (torch's chunked gather: 1.9 ms) and 2.3 ms at k=16
   (torch's transposes + sampled_addmm: 9.5-10.4 ms). */
#include <stdint.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
/* dst[c * ldd + r] = src[r * lds + c] for a full 16x16 tile, in registers */
static inline void tile16(const float* src, int64_t lds, float* dst, int64_t ldd) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 8; ++i) {
        int a = (i / 4) * 8 + (i % 4);
        t[a] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0x88);
        t[a + 4] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0xDD);
    }
    for (int i = 0; i < 8; ++i) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
    for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
}

/* lane u of the result = the sum of p[u]'s 16 lanes (16 dot products finished at once) */
static inline __m512 reduce16(const __m512* p) {
    __m512 a[8], b[4], c[2];
    for (int u = 0; u < 8; ++u)
        a[u] = _mm512_add_ps(_mm512_unpacklo_ps(p[2 * u], p[2 * u + 1]), _mm512_unpackhi_ps(p[2 * u], p[2 * u + 1]));
    for (int v = 0; v < 4; ++v)
        b[v] = _mm512_add_ps(_mm512_shuffle_ps(a[2 * v], a[2 * v + 1], 0x44),
                             _mm512_shuffle_ps(a[2 * v], a[2 * v + 1], 0xEE));
    for (int w = 0; w < 2; ++w)
        c[w] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * w], b[2 * w + 1], 0x88),
                             _mm512_shuffle_f32x4(b[2 * w], b[2 * w + 1], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
}

/* out[j0 + u] += dot(gr, xt row c[u]) for u < r <= 16, over m tokens (m a multiple of 16) */
static inline void dots16(const float* gr, const float* xt, const int32_t* c, int r, int64_t m, float* out) {
    __m512 p[16];
    for (int u = 0; u < 16; ++u) p[u] = _mm512_setzero_ps();
    if (r == 16) {
        for (int64_t t = 0; t < m; t += 16) {
            __m512 gv = _mm512_loadu_ps(gr + t);
            for (int u = 0; u < 16; ++u) p[u] = _mm512_fmadd_ps(gv, _mm512_loadu_ps(xt + (int64_t)c[u] * m + t), p[u]);
        }
        _mm512_storeu_ps(out, _mm512_add_ps(_mm512_loadu_ps(out), reduce16(p)));
        return;
    }
    for (int64_t t = 0; t < m; t += 16) {
        __m512 gv = _mm512_loadu_ps(gr + t);
        for (int u = 0; u < r; ++u) p[u] = _mm512_fmadd_ps(gv, _mm512_loadu_ps(xt + (int64_t)c[u] * m + t), p[u]);
    }
    __mmask16 mask = (__mmask16)((1u << r) - 1u);
    _mm512_mask_storeu_ps(out, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), reduce16(p)));
}
#endif

/* dst (cols x rows, contiguous) = src (rows x cols, row stride lds) transposed, in 16x16 tiles.
   One thread walks 16 source rows at a time from left to right (16 sequential streams, which the
   prefetchers follow); several threads split the columns instead. */
static inline void transpose_tile(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst,
                                  int64_t r0, int64_t c0) {
    int64_t r1 = r0 + 16 < rows ? r0 + 16 : rows, c1 = c0 + 16 < cols ? c0 + 16 : cols;
#ifdef __AVX512F__
    if (r1 - r0 == 16 && c1 - c0 == 16) {
        tile16(src + r0 * lds + c0, lds, dst + c0 * rows + r0, rows);
        return;
    }
#endif
    for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * lds + c];
}

static void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int nthreads) {
    if (nthreads == 1) {
        for (int64_t r0 = 0; r0 < rows; r0 += 16)
            for (int64_t c0 = 0; c0 < cols; c0 += 16) transpose_tile(src, lds, rows, cols, dst, r0, c0);
        return;
    }
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t c0 = 0; c0 < cols; c0 += 16)
        for (int64_t r0 = 0; r0 < rows; r0 += 16) transpose_tile(src, lds, rows, cols, dst, r0, c0);
}

/* W[i, idx[i, j]] = src[i, j] (bit copies of elem-byte entries; W rows ldw entries apart), prefetching
   the rows ahead: twice as fast as torch's scatter_ on the scattered, mostly cold cache lines of W. */
#define PUT_ROWS(T) \
    { \
        T* wt = (T*)w; \
        const T* st = (const T*)src; \
        for (int64_t i = 0; i < d_out; ++i) { \
            if (i + 4 < d_out) \
                for (int64_t j = 0; j < k; ++j) __builtin_prefetch(wt + (i + 4) * ldw + idx[(i + 4) * k + j], 1); \
            for (int64_t j = 0; j < k; ++j) wt[i * ldw + idx[i * k + j]] = st[i * k + j]; \
        } \
    }
void neuroada_put_rows(void* w, int64_t ldw, const int32_t* idx, const void* src, int64_t d_out, int64_t k,
                       int64_t elem) {
    if (elem == 2) PUT_ROWS(uint16_t)
    else if (elem == 4) PUT_ROWS(uint32_t)
    else if (elem == 8) PUT_ROWS(uint64_t)
}

/* Small k. out_t[j * d_out + i] = sum_n g[n, i] * x[n, idx_t[j * d_out + i]]: one gather per
   entry from an x row that sits in L1, vectorised over i; output rows split over threads. With
   AVX-512 the gathers are explicit (gcc emulates them with scalar inserts otherwise), and tokens go
   four at a time: the indices and the sums stay in registers over the four rows, and the next four
   x rows are prefetched a slice per step (g's rows stream, which the hardware prefetcher follows).
   Against one token at a time, reading and writing the sums for each, this took 0.90x, 0.75x and
   0.84x the time on 768x768, 2048x768 and 768x2048 layers (1,024 tokens, k=1, 64 MB written between
   calls, best of 30, interleaved, 3 runs on this project's Xeon; e.g. 0.47 -> 0.42 ms on 768x768). */
#ifdef __AVX512F__
/* a[i..i+16) (lanes in m) += sum over the rows r < nr of g_r[i..] * x_r[c[i..]] */
static inline void gather_rows(const float* const* gr, const float* const* xr, int nr, const int32_t* c,
                               float* a, int64_t i, __mmask16 m) {
    __m512i ci = _mm512_maskz_loadu_epi32(m, c + i);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int r = 0;
    for (; r + 2 <= nr; r += 2) {
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, gr[r] + i),
                             _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, ci, xr[r], 4), s0);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, gr[r + 1] + i),
                             _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, ci, xr[r + 1], 4), s1);
    }
    if (r < nr)
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, gr[r] + i),
                             _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, ci, xr[r], 4), s0);
    _mm512_mask_storeu_ps(a + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_add_ps(s0, s1)));
}
#endif

void neuroada_grad_gather(const float* g, int64_t ldg, const float* x, int64_t ldx, const int32_t* idx_t,
                          float* out_t, int64_t n_tok, int64_t d_out, int64_t k, int nthreads) {
    memset(out_t, 0, sizeof(float) * k * d_out);
    int64_t part = (d_out + nthreads - 1) / nthreads;
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t i0 = 0; i0 < d_out; i0 += part) {
        int64_t i1 = i0 + part < d_out ? i0 + part : d_out;
#ifdef __AVX512F__
        int64_t steps = (i1 - i0 + 15) / 16, x_lines = (ldx + 15) / 16;
        int64_t x_per_step = (x_lines + steps - 1) / steps;  /* x lines to prefetch per row and step */
        for (int64_t n0 = 0; n0 < n_tok; n0 += 4) {
            int nr = n_tok - n0 < 4 ? (int)(n_tok - n0) : 4;
            int np = n_tok - n0 - nr < 4 ? (int)(n_tok - n0 - nr) : 4;  /* rows of the next block */
            const float *gr[4], *xr[4];
            for (int r = 0; r < nr; ++r) gr[r] = g + (n0 + r) * ldg, xr[r] = x + (n0 + r) * ldx;
            for (int64_t s = 0, i = i0; i < i1; ++s, i += 16) {
                for (int r = 0; r < np; ++r) {  /* the next block's x rows, a slice per step */
                    const float* xn = x + (n0 + nr + r) * ldx;
                    for (int64_t l = s * x_per_step; l < (s + 1) * x_per_step && l < x_lines; ++l)
                        _mm_prefetch((const char*)(xn + l * 16), _MM_HINT_T0);
                }
                __mmask16 m = i1 - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (i1 - i)) - 1u);
                for (int64_t j = 0; j < k; ++j) gather_rows(gr, xr, nr, idx_t + j * d_out, out_t + j * d_out, i, m);
            }
        }
#else
        for (int64_t n0 = 0; n0 < n_tok; n0 += 64) {
            int64_t n1 = n0 + 64 < n_tok ? n0 + 64 : n_tok;
            for (int64_t j = 0; j < k; ++j) {
                float* __restrict a = out_t + j * d_out;
                const int32_t* __restrict c = idx_t + j * d_out;
                for (int64_t n = n0; n < n1; ++n) {
                    const float* __restrict gr = g + n * ldg;
                    const float* __restrict xr = x + n * ldx;
                    #pragma omp simd
                    for (int64_t i = i0; i < i1; ++i) a[i] += gr[i] * xr[c[i]];
                }
            }
        }
#endif
    }
}

/* Larger k: a sampled dense-dense product. Per block of nb tokens, g and x are transposed into
   cache-resident scratch (gt: d_out x nb, xt: d_in x nb), then out[i, j] += dot(gt[i], xt[idx[i, j]]);
   with AVX-512, 16 dots of a row are summed by one register transpose instead of 16 reductions. */
void neuroada_grad_sddmm(const float* g, int64_t ldg, const float* x, int64_t ldx, const int32_t* idx,
                         float* out, int64_t n_tok, int64_t d_out, int64_t d_in, int64_t k,
                         float* gt, float* xt, int64_t nb, int nthreads) {
    memset(out, 0, sizeof(float) * d_out * k);
    for (int64_t n0 = 0; n0 < n_tok; n0 += nb) {
        int64_t m = n0 + nb < n_tok ? nb : n_tok - n0;
        transpose(g + n0 * ldg, ldg, m, d_out, gt, nthreads);
        transpose(x + n0 * ldx, ldx, m, d_in, xt, nthreads);
        #pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int64_t i = 0; i < d_out; ++i) {
            const float* __restrict gr = gt + i * m;
#ifdef __AVX512F__
            if (m % 16 == 0) {  /* 16 dots at a time, one register transpose-reduce for all 16 */
                for (int64_t j0 = 0; j0 < k; j0 += 16)
                    dots16(gr, xt, idx + i * k + j0, (int)(k - j0 < 16 ? k - j0 : 16), m, out + i * k + j0);
                continue;
            }
#endif
            for (int64_t j = 0; j < k; ++j) {
                const float* __restrict xr = xt + (int64_t)idx[i * k + j] * m;
                float s = 0.f;
                #pragma omp simd reduction(+ : s)
                for (int64_t t = 0; t < m; ++t) s += gr[t] * xr[t];
                out[i * k + j] += s;
            }
        }
    }
}
