/* ggml's quantized arithmetic, computed the way llama.cpp's CPU backend (its
 * AVX2 + FMA kernels) computes it, so that the guest's logits are llama.cpp's:
 *
 *  - weights in blocks of 32: Q4_1 (f16 scale d, f16 minimum m, 16 bytes of
 *    nibbles: elements 0..15 in the low nibbles, 16..31 in the high ones; value
 *    = d * q + m) and Q8_0 (f16 d, 32 int8; value = d * q);
 *  - a matrix-vector product first quantizes the activations per block of 32
 *    (Q8_1 for Q4_1 weights: d = max|x| / 127, q = round-to-even(x * 127 / max|x|),
 *    s = d * sum(q) in f16; Q8_0 for Q8_0 weights: the same without s);
 *  - each block's 32 integer products are added in eight lanes of four; every
 *    lane gathers d_w * d_x * lane over the blocks with a fused multiply-add
 *    (one rounding: emulated in double, exact for these operands), the eight
 *    lanes are added as a fixed tree, and Q4_1 adds sum(m_w * s_x) at the end
 *    (DOT_ORDER_BLOCKS: ggml's scalar order instead, see enum dot_order).
 *
 * The host twin (unikernel_sim/tinyllama/gguf_reference.py) is the same
 * arithmetic in numpy; tests compare the two bit for bit. */
#ifndef TINYLLAMA_QUANT_H
#define TINYLLAMA_QUANT_H
#include <stdint.h>

#define QK              32      /* elements per block */
#define Q4_1_NIBBLE_BYTES 16
#define Q8_LANES        8       /* the AVX2 kernels' accumulator lanes */

struct block_q4_1 {
    uint16_t d;                 /* f16 scale   */
    uint16_t m;                 /* f16 minimum */
    uint8_t qs[Q4_1_NIBBLE_BYTES];
};

struct block_q8_0 {
    uint16_t d;                 /* f16 scale */
    int8_t qs[QK];
};

struct block_q8_1 {             /* quantized activations for Q4_1 weights */
    float d;                    /* the f16 scale, widened */
    float s;                    /* the f16 d * sum(qs), widened */
    int8_t qs[QK];
};

/* Fills the f16 -> f32 table fp16_to_fp32 reads: call it before any of the
 * functions here (gguf_llama_create does). */
void fp16_init(void);

extern float fp16_table[1 << 16];

static inline float fp16_to_fp32(uint16_t h)
{
    return fp16_table[h];       /* a branch-free loop body: one translated block per block of 32 */
}
uint16_t fp32_to_fp16(float f);            /* round to nearest even, as F16C's vcvtps2ph */

/* a * b + c rounded once to float (what vfmadd computes) */
static inline float fma32(float a, float b, float c)
{
    return (float)((double)a * (double)b + (double)c);
}

/* x (n) into n / QK blocks; with_sum fills s (Q8_1), else s = 0 (Q8_0). */
void quantize_q8(struct block_q8_1 *out, const float *x, int n, int with_sum);

/* The order a quantized dot product adds up in. */
enum dot_order {
    DOT_ORDER_AVX2,     /* ggml's AVX2 + FMA kernels (above): llama.cpp's x86 results, bit for bit */
    DOT_ORDER_BLOCKS,   /* ggml's scalar kernels: each block's integer sum, scaled, added in float:
                         * one float multiply-add per block instead of eight fused lanes, ~3x
                         * faster under emulation (SSE float is software), last bits differ */
};

/* out (batch, rows) = x (batch, n) @ W (rows, n)^T for Q4_1 (q4_1 != 0) or Q8_0
 * weights, x quantized by quantize_q8 (with_sum for Q4_1), one row of W against
 * every x of the batch before the next row: each weight is read once per batch. */
void matmul_quantized(float *out, const void *w, int q4_1, const struct block_q8_1 *x, int n, int rows, int batch,
                      enum dot_order order);

/* ggml_vec_dot_f32 and ggml_vec_dot_f16's order: 32 elements a step in four
 * eight-lane fused multiply-add accumulators, a fixed tree, the tail in double. */
float dot_f32(const float *w, const float *x, int n);
float dot_f16(const uint16_t *w, const uint16_t *x, int n);

/* dot_f16 of a strided w (w[i * stride]) with x over n elements padded with
 * zeros to whole steps (no tail): the attention's product with the value
 * cache, which llama.cpp keeps transposed and padded. */
float dot_f16_padded(const uint16_t *w, uint64_t stride, const uint16_t *x, int n);

/* ggml_vec_dot_f16's scalar order (DOT_ORDER_BLOCKS): each product in float,
 * added up in double; w strided as above. */
float dot_f16_scalar(const uint16_t *w, uint64_t stride, const uint16_t *x, int n);
float dot_f32_scalar(const float *w, const float *x, int n);

/* ggml's vectorised expf (a degree-5 polynomial after splitting off 2^n). */
float ggml_expf(float x);

#endif
