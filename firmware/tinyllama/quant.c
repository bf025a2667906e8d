/* ggml's quantized arithmetic (see quant.h), with SSSE3 for the integer products. */
#include "tinyllama/quant.h"
#include <smmintrin.h>      /* SSE4.1 (x86-64-v2): pextrd; SSSE3 below it */
#include "kernel_lib/libm/math.h"

#define F32_EXPONENT_MASK 0x7f800000u
#define F32_ABS_MASK      0x7fffffffu
#define F16_INFINITY      0x7c00u
#define F16_QUIET_NAN     0x7e00u
#define F32_F16_BIAS_GAP  0x38000000u     /* (127 - 15) << 23 */
#define F32_F16_OVERFLOW  0x477ff000u     /* 65520.0f: rounds to f16 infinity */
#define F32_F16_SUBNORMAL 0x38800000u     /* 2^-14: the smallest normal f16 */
#define Q8_MAX            127.0f
#define F16_SUBNORMAL_ULP 0x1p-24f        /* value of the lowest mantissa bit of an f16 subnormal */

static inline uint32_t bits_of(float f)
{
    union { float f; uint32_t u; } v = {.f = f};
    return v.u;
}

static inline float float_of(uint32_t u)
{
    union { uint32_t u; float f; } v = {.u = u};
    return v.f;
}

float fp16_table[1 << 16];             /* (f16 bits) -> value: one load instead of a conversion */

static float fp16_convert(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;

    if (exponent == 0x1f)                                   /* inf, nan */
        return float_of(sign | F32_EXPONENT_MASK | (mantissa << 13));
    if (exponent == 0) {                                    /* zero, subnormal: mantissa * 2^-24 */
        float value = (float)mantissa * F16_SUBNORMAL_ULP;
        return sign ? -value : value;
    }
    return float_of(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

void fp16_init(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++)
        fp16_table[h] = fp16_convert((uint16_t)h);
}

uint16_t fp32_to_fp16(float f)
{
    uint32_t x = bits_of(f), sign = (x >> 16) & 0x8000;

    x &= F32_ABS_MASK;
    if (x > F32_EXPONENT_MASK)
        return (uint16_t)(sign | F16_QUIET_NAN);
    if (x >= F32_F16_OVERFLOW)
        return (uint16_t)(sign | F16_INFINITY);
    if (x < F32_F16_SUBNORMAL)      /* 0.5 + v rounds v to a multiple of 2^-24, to even */
        return (uint16_t)(sign | (bits_of(float_of(x) + 0.5f) - bits_of(0.5f)));
    return (uint16_t)(sign | ((x - F32_F16_BIAS_GAP + 0xfff + ((x >> 13) & 1)) >> 13));
}

void quantize_q8(struct block_q8_1 *out, const float *x, int n, int with_sum)
{
    for (int b = 0; b < n / QK; b++, x += QK, out++) {
        float amax = 0.0f, d, inverse;
        int sum = 0;

        for (int j = 0; j < QK; j++) {
            float magnitude = x[j] < 0 ? -x[j] : x[j];
            amax = magnitude > amax ? magnitude : amax;
        }
        d = amax / Q8_MAX;
        inverse = amax != 0.0f ? Q8_MAX / amax : 0.0f;
        for (int j = 0; j < QK; j++) {
            out->qs[j] = (int8_t)__builtin_rintf(x[j] * inverse);    /* roundss: to nearest even */
            sum += out->qs[j];
        }
        out->d = fp16_to_fp32(fp32_to_fp16(d));
        out->s = with_sum ? fp16_to_fp32(fp32_to_fp16(d * (float)sum)) : 0.0f;
    }
}

/* acc (8 lanes, float) = fma(scale, lanes, acc), each lane rounded once */
static inline void accumulate(__m128 acc[2], float scale, __m128i lanes_low, __m128i lanes_high)
{
    __m128d s = _mm_set1_pd((double)scale);
    __m128i lanes[2] = {lanes_low, lanes_high};

    for (int half = 0; half < 2; half++) {
        __m128d low = _mm_add_pd(_mm_mul_pd(s, _mm_cvtepi32_pd(lanes[half])), _mm_cvtps_pd(acc[half]));
        __m128d high = _mm_add_pd(_mm_mul_pd(s, _mm_cvtepi32_pd(_mm_unpackhi_epi64(lanes[half], lanes[half]))),
                                  _mm_cvtps_pd(_mm_movehl_ps(acc[half], acc[half])));
        acc[half] = _mm_movelh_ps(_mm_cvtpd_ps(low), _mm_cvtpd_ps(high));
    }
}

/* hsum_float_8: (lane i + lane i+4), then pairs, then the last two */
static inline float sum_lanes(const __m128 acc[2])
{
    float half[4], pairs[2];

    _mm_storeu_ps(half, _mm_add_ps(acc[1], acc[0]));
    pairs[0] = half[0] + half[2];
    pairs[1] = half[1] + half[3];
    return pairs[0] + pairs[1];
}

static inline __attribute__((always_inline)) float dot_q4_1(const struct block_q4_1 *row, const struct block_q8_1 *x, int blocks)
{
    const __m128i low_mask = _mm_set1_epi8(0x0f), ones = _mm_set1_epi16(1);
    __m128 acc[2] = {_mm_setzero_ps(), _mm_setzero_ps()};
    float mins = 0.0f;

    for (int b = 0; b < blocks; b++) {
        __m128i packed = _mm_loadu_si128((const __m128i *)row[b].qs);
        __m128i low = _mm_and_si128(packed, low_mask);                      /* elements 0..15  */
        __m128i high = _mm_and_si128(_mm_srli_epi16(packed, 4), low_mask);  /* elements 16..31 */
        __m128i y0 = _mm_loadu_si128((const __m128i *)x[b].qs);
        __m128i y1 = _mm_loadu_si128((const __m128i *)(x[b].qs + 16));
        __m128i lanes_low = _mm_madd_epi16(_mm_maddubs_epi16(low, y0), ones);   /* 4 lanes of 4 products */
        __m128i lanes_high = _mm_madd_epi16(_mm_maddubs_epi16(high, y1), ones);

        accumulate(acc, fp16_to_fp32(row[b].d) * x[b].d, lanes_low, lanes_high);
        mins = fma32(fp16_to_fp32(row[b].m), x[b].s, mins);
    }
    return sum_lanes(acc) + mins;
}

/* y with w's sign (psignb without w = 0's zeroing, which |w| = 0 makes moot):
 * (y ^ m) - m, m = 0xff where w < 0. psignb is ~8x slower than these three under
 * Unicorn (a fifth of a SmolLM2 forward pass went to it, perf). y is never -128. */
static inline __m128i with_sign_of(__m128i y, __m128i w)
{
    __m128i negative = _mm_cmpgt_epi8(_mm_setzero_si128(), w);

    return _mm_sub_epi8(_mm_xor_si128(y, negative), negative);
}

static inline __attribute__((always_inline)) float dot_q8_0(const struct block_q8_0 *row, const struct block_q8_1 *x, int blocks)
{
    const __m128i ones = _mm_set1_epi16(1);
    __m128 acc[2] = {_mm_setzero_ps(), _mm_setzero_ps()};

    for (int b = 0; b < blocks; b++) {
        __m128i lanes[2];
        for (int half = 0; half < 2; half++) {     /* |w| * (y with w's sign): unsigned x signed */
            __m128i wq = _mm_loadu_si128((const __m128i *)(row[b].qs + 16 * half));
            __m128i y = _mm_loadu_si128((const __m128i *)(x[b].qs + 16 * half));
            lanes[half] = _mm_madd_epi16(_mm_maddubs_epi16(_mm_abs_epi8(wq), with_sign_of(y, wq)), ones);
        }
        accumulate(acc, fp16_to_fp32(row[b].d) * x[b].d, lanes[0], lanes[1]);
    }
    return sum_lanes(acc);
}

/* The integer sum of one block's 32 products, given as eight lanes of four. */
static inline int block_sum(__m128i lanes_low, __m128i lanes_high)
{
    __m128i sum = _mm_add_epi32(lanes_low, lanes_high);

    sum = _mm_hadd_epi32(sum, sum);
    return _mm_cvtsi128_si32(_mm_hadd_epi32(sum, sum));
}

/* ggml_vec_dot_q4_1_q8_1's scalar order: sumf += (d_w * d_x) * sumi + m_w * s_x, in float. */
/* The 32 products of a Q4_1 block with a Q8_1 block as eight 16-bit pair sums: each
 * <= 2 * 2 * 15 * 127, so sums of two of them still fit in 16 bits. */
static inline __m128i q4_1_pairs(const struct block_q4_1 *w, const struct block_q8_1 *x)
{
    const __m128i low_mask = _mm_set1_epi8(0x0f);
    __m128i packed = _mm_loadu_si128((const __m128i *)w->qs);
    __m128i low = _mm_and_si128(packed, low_mask);                      /* elements 0..15  */
    __m128i high = _mm_and_si128(_mm_srli_epi16(packed, 4), low_mask);  /* elements 16..31 */

    return _mm_add_epi16(_mm_maddubs_epi16(low, _mm_loadu_si128((const __m128i *)x->qs)),
                         _mm_maddubs_epi16(high, _mm_loadu_si128((const __m128i *)(x->qs + 16))));
}

static inline float q4_1_term(const struct block_q4_1 *w, const struct block_q8_1 *x, int sumi)
{
    return (fp16_to_fp32(w->d) * x->d) * (float)sumi + fp16_to_fp32(w->m) * x->s;
}

/* ggml_vec_dot_q4_1_q8_1's scalar order: sumf += (d_w * d_x) * sumi + m_w * s_x, in float.
 * Two blocks' integer sums are reduced together (one horizontal add chain for both). */
static inline __attribute__((always_inline)) float dot_q4_1_blocks(const struct block_q4_1 *row, const struct block_q8_1 *x, int blocks)
{
    const __m128i ones = _mm_set1_epi16(1);
    float sum = 0.0f;
    int b = 0;

    for (; b + 1 < blocks; b += 2) {
        __m128i halves = _mm_hadd_epi16(q4_1_pairs(&row[b], &x[b]), q4_1_pairs(&row[b + 1], &x[b + 1]));
        __m128i quads = _mm_madd_epi16(halves, ones);                   /* b, b, b+1, b+1 */
        __m128i both = _mm_hadd_epi32(quads, quads);                    /* b, b+1, b, b+1 */

        sum += q4_1_term(&row[b], &x[b], _mm_cvtsi128_si32(both));
        sum += q4_1_term(&row[b + 1], &x[b + 1], _mm_extract_epi32(both, 1));
    }
    for (; b < blocks; b++) {
        __m128i quads = _mm_madd_epi16(q4_1_pairs(&row[b], &x[b]), ones);
        __m128i total = _mm_hadd_epi32(quads, quads);
        sum += q4_1_term(&row[b], &x[b], _mm_cvtsi128_si32(_mm_hadd_epi32(total, total)));
    }
    return sum;
}

/* ggml_vec_dot_q8_0_q8_0's scalar order: sumf += sumi * (d_w * d_x), in float. */
static inline __attribute__((always_inline)) float dot_q8_0_blocks(const struct block_q8_0 *row, const struct block_q8_1 *x, int blocks)
{
    const __m128i ones = _mm_set1_epi16(1);
    float sum = 0.0f;

    for (int b = 0; b < blocks; b++) {
        __m128i lanes[2];
        for (int half = 0; half < 2; half++) {
            __m128i wq = _mm_loadu_si128((const __m128i *)(row[b].qs + 16 * half));
            __m128i y = _mm_loadu_si128((const __m128i *)(x[b].qs + 16 * half));
            lanes[half] = _mm_madd_epi16(_mm_maddubs_epi16(_mm_abs_epi8(wq), with_sign_of(y, wq)), ones);
        }
        sum += (float)block_sum(lanes[0], lanes[1]) * (fp16_to_fp32(row[b].d) * x[b].d);
    }
    return sum;
}

/* One row of quantized weights against one quantized activation vector. */
typedef float (*row_dot)(const void *row, const struct block_q8_1 *x, int blocks);

static inline __attribute__((always_inline)) float q4_1_avx2(const void *row, const struct block_q8_1 *x, int blocks)
{
    return dot_q4_1(row, x, blocks);
}

static inline __attribute__((always_inline)) float q4_1_blocks(const void *row, const struct block_q8_1 *x, int blocks)
{
    return dot_q4_1_blocks(row, x, blocks);
}

static inline __attribute__((always_inline)) float q8_0_avx2(const void *row, const struct block_q8_1 *x, int blocks)
{
    return dot_q8_0(row, x, blocks);
}

static inline __attribute__((always_inline)) float q8_0_blocks(const void *row, const struct block_q8_1 *x, int blocks)
{
    return dot_q8_0_blocks(row, x, blocks);
}

/* The row loop with dot inlined into it: no call, prologue or spill per row. Under
 * Unicorn every guest store takes its slow path (tens of ns: docs/unicorn-quirks.md),
 * and a call per row cost a dozen of them (return address, saved registers, spills). */
static inline __attribute__((always_inline)) void matmul_rows(float *out, const uint8_t *w, uint64_t row_bytes,
                                                               const struct block_q8_1 *x, int blocks, int rows,
                                                               int batch, row_dot dot)
{
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < batch; t++)
            out[(uint64_t)t * rows + r] = dot(w + r * row_bytes, x + (uint64_t)t * blocks, blocks);
}

/* One matmul per row-dot function, each with its dot inlined into the row loop. */
#define MATMUL_WITH(name, dot)                                                                        \
    static void name(float *out, const uint8_t *w, uint64_t row_bytes, const struct block_q8_1 *x,   \
                     int blocks, int rows, int batch)                                               \
    {                                                                                                \
        matmul_rows(out, w, row_bytes, x, blocks, rows, batch, dot);                                 \
    }

MATMUL_WITH(matmul_q4_1_avx2, q4_1_avx2)
MATMUL_WITH(matmul_q4_1_blocks, q4_1_blocks)
MATMUL_WITH(matmul_q8_0_avx2, q8_0_avx2)
MATMUL_WITH(matmul_q8_0_blocks, q8_0_blocks)

void matmul_quantized(float *out, const void *w, int q4_1, const struct block_q8_1 *x, int n, int rows, int batch,
                      enum dot_order order)
{
    const int blocks = n / QK;
    const uint64_t row_bytes = (uint64_t)blocks * (q4_1 ? sizeof(struct block_q4_1) : sizeof(struct block_q8_0));

    if (q4_1)
        (order == DOT_ORDER_AVX2 ? matmul_q4_1_avx2 : matmul_q4_1_blocks)(out, w, row_bytes, x, blocks, rows, batch);
    else
        (order == DOT_ORDER_AVX2 ? matmul_q8_0_avx2 : matmul_q8_0_blocks)(out, w, row_bytes, x, blocks, rows, batch);
}

#define DOT_STEP    32          /* GGML_F32_STEP: elements per step */
#define DOT_ARRAYS  4           /* accumulators of Q8_LANES lanes each */

/* lane sums of acc (DOT_ARRAYS x Q8_LANES): pairs of accumulators, then within one */
static double reduce_accumulators(float acc[DOT_ARRAYS][Q8_LANES])
{
    float quarter[4], half[2];

    for (int offset = DOT_ARRAYS / 2; offset > 0; offset /= 2)
        for (int a = 0; a < offset; a++)
            for (int l = 0; l < Q8_LANES; l++)
                acc[a][l] += acc[a + offset][l];
    for (int l = 0; l < 4; l++)
        quarter[l] = acc[0][l] + acc[0][l + 4];
    half[0] = quarter[0] + quarter[1];             /* two horizontal adds */
    half[1] = quarter[2] + quarter[3];
    return (double)(half[0] + half[1]);
}

/* Element i of a float or f16 array, widened to float. */
typedef float (*load_element)(const void *base, uint64_t i);

static inline float f32_element(const void *base, uint64_t i)
{
    return ((const float *)base)[i];
}

static inline float f16_element(const void *base, uint64_t i)
{
    return fp16_to_fp32(((const uint16_t *)base)[i]);
}

/* ggml_vec_dot_f32/f16's order over w (stride apart) and x: whole steps of
 * DOT_STEP in the lanes, the elements after the last whole step added in double;
 * padded, those go into the lanes instead, as the zero-padded step llama.cpp's
 * cache makes of them. */
static inline __attribute__((always_inline)) float dot_steps(load_element load, const void *w, uint64_t stride,
                                                              const void *x, int n, int padded)
{
    float acc[DOT_ARRAYS][Q8_LANES] = {{0}};
    int lanes_end = padded ? n : n - n % DOT_STEP;
    double sum;

    for (int i = 0; i < lanes_end; i += DOT_STEP)
        for (int a = 0; a < DOT_ARRAYS; a++)
            for (int l = 0; l < Q8_LANES && i + a * Q8_LANES + l < lanes_end; l++) {
                int j = i + a * Q8_LANES + l;
                acc[a][l] = fma32(load(w, (uint64_t)j * stride), load(x, (uint64_t)j), acc[a][l]);
            }
    sum = reduce_accumulators(acc);
    for (int i = lanes_end; i < n; i++)
        sum += (double)(load(w, (uint64_t)i * stride) * load(x, (uint64_t)i));
    return (float)sum;
}

/* ggml's scalar loop: each product in float, added up in double. */
static inline __attribute__((always_inline)) float dot_products(load_element load, const void *w, uint64_t stride,
                                                                 const void *x, int n)
{
    double sum = 0.0;

    for (int i = 0; i < n; i++)
        sum += (double)(load(w, (uint64_t)i * stride) * load(x, (uint64_t)i));
    return (float)sum;
}

float dot_f32(const float *w, const float *x, int n)
{
    return dot_steps(f32_element, w, 1, x, n, 0);
}

float dot_f16(const uint16_t *w, const uint16_t *x, int n)
{
    return dot_steps(f16_element, w, 1, x, n, 0);
}

float dot_f16_padded(const uint16_t *w, uint64_t stride, const uint16_t *x, int n)
{
    return dot_steps(f16_element, w, stride, x, n, 1);
}

float dot_f16_scalar(const uint16_t *w, uint64_t stride, const uint16_t *x, int n)
{
    return dot_products(f16_element, w, stride, x, n);
}

float dot_f32_scalar(const float *w, const float *x, int n)
{
    return dot_products(f32_element, w, 1, x, n);
}

/* ggml_v_expf's constants: x = n ln2 + b, exp(b) by a degree-5 polynomial. */
#define EXP_SHIFT     0x1.8p23f
#define EXP_LOG2E     0x1.715476p+0f
#define EXP_LN2_HI    0x1.62e4p-1f
#define EXP_LN2_LO    0x1.7f7d1cp-20f
#define EXP_C0        0x1.0e4020p-7f
#define EXP_C1        0x1.573e2ep-5f
#define EXP_C2        0x1.555e66p-3f
#define EXP_C3        0x1.fffdb6p-2f
#define EXP_C4        0x1.ffffecp-1f
#define EXP_UNDERFLOW -103.97f
#define EXP_OVERFLOW  88.38f
#define EXP_SCALED_LIMIT 126.0f

float ggml_expf(float x)
{
    float z = fma32(x, EXP_LOG2E, EXP_SHIFT);
    float n = z - EXP_SHIFT;
    float b = fma32(-n, EXP_LN2_LO, fma32(-n, EXP_LN2_HI, x));
    float k = float_of((bits_of(z) << 23) + bits_of(1.0f));         /* 2^n */
    float u = b * b;
    float j = fma32(fma32(fma32(EXP_C0, b, EXP_C1), u, fma32(EXP_C2, b, EXP_C3)), u, EXP_C4 * b);
    float result = fma32(j, k, k);

    if (x < EXP_UNDERFLOW)
        return 0.0f;
    if (x > EXP_OVERFLOW)
        return __builtin_inff();
    if (n > EXP_SCALED_LIMIT || n < -EXP_SCALED_LIMIT)   /* ggml rescales here; all but 0 or inf */
        return (float)k_exp((double)x);
    return result;
}
