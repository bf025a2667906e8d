/* The forward pass of a GGUF llama model over a batch of positions, in the
 * order llama.cpp evaluates it: each matrix is read once for the whole batch;
 * attention runs position by position (each sees the cache up to itself). */
#include "tinyllama/gguf_model.h"
#include "kernel_lib/libc/string.h"
#include "kernel_lib/libm/math.h"

/* One row of the embedding table, dequantized (ggml_get_rows). */
static void embedding_row(float *out, const struct gguf_matrix *m, int32_t token)
{
    uint64_t row = (uint64_t)token;

    if (m->type == GGML_TYPE_Q8_0) {
        const struct block_q8_0 *blocks = (const struct block_q8_0 *)m->data + row * (m->n / QK);
        for (int b = 0; b < m->n / QK; b++)
            for (int j = 0; j < QK; j++)
                out[b * QK + j] = fp16_to_fp32(blocks[b].d) * (float)blocks[b].qs[j];
    } else if (m->type == GGML_TYPE_Q4_1) {
        const struct block_q4_1 *blocks = (const struct block_q4_1 *)m->data + row * (m->n / QK);
        for (int b = 0; b < m->n / QK; b++)
            for (int j = 0; j < QK; j++) {
                int q = j < QK / 2 ? blocks[b].qs[j] & 0x0f : blocks[b].qs[j - QK / 2] >> 4;
                out[b * QK + j] = fp16_to_fp32(blocks[b].d) * (float)q + fp16_to_fp32(blocks[b].m);
            }
    } else if (m->type == GGML_TYPE_F16) {
        const uint16_t *halves = (const uint16_t *)m->data + row * m->n;
        for (int j = 0; j < m->n; j++)
            out[j] = fp16_to_fp32(halves[j]);
    } else {
        memcpy(out, (const float *)m->data + row * m->n, (uint64_t)m->n * sizeof(float));
    }
}

/* ggml_rms_norm, then the weight: squares summed in double, mean and scale in float. */
static void rms_norm(float *out, const float *x, const float *weight, int n, float eps)
{
    double squares = 0.0;
    float mean, scale;

    for (int j = 0; j < n; j++)
        squares += (double)(x[j] * x[j]);
    mean = (float)(squares / n);
    scale = 1.0f / k_sqrtf(mean + eps);
    for (int j = 0; j < n; j++)
        out[j] = (x[j] * scale) * weight[j];
}

/* out (batch, m->rows) = x (batch, m->n) @ m^T, x first converted to the type
 * ggml pairs with m's (Q8_1 for Q4_1, Q8_0 for Q8_0, F16 for F16). */
static void matmul(struct gguf_llama_model *model, float *out, const struct gguf_matrix *m, const float *x, int batch)
{
    void *xq = model->state.xq;
    int n = m->n;

    if (m->type == GGML_TYPE_Q4_1 || m->type == GGML_TYPE_Q8_0) {
        for (int t = 0; t < batch; t++)
            quantize_q8((struct block_q8_1 *)xq + (uint64_t)t * (n / QK), x + (uint64_t)t * n, n,
                        m->type == GGML_TYPE_Q4_1);
        matmul_quantized(out, m->data, m->type == GGML_TYPE_Q4_1, xq, n, m->rows, batch, model->dot_order);
        return;
    }
    if (m->type == GGML_TYPE_F16)
        for (uint64_t j = 0; j < (uint64_t)batch * n; j++)
            ((uint16_t *)xq)[j] = fp32_to_fp16(x[j]);
    for (int r = 0; r < m->rows; r++)
        for (int t = 0; t < batch; t++) {
            uint64_t at = (uint64_t)r * n, from = (uint64_t)t * n;
            float *o = out + (uint64_t)t * m->rows + r;
            if (m->type == GGML_TYPE_F16)
                *o = model->dot_order == DOT_ORDER_AVX2
                         ? dot_f16((const uint16_t *)m->data + at, (const uint16_t *)xq + from, n)
                         : dot_f16_scalar((const uint16_t *)m->data + at, 1, (const uint16_t *)xq + from, n);
            else
                *o = model->dot_order == DOT_ORDER_AVX2 ? dot_f32((const float *)m->data + at, x + from, n)
                                                        : dot_f32_scalar((const float *)m->data + at, x + from, n);
        }
}

/* llama's "normal" RoPE: (v[2i], v[2i+1]) of each head rotated by
 * pos * base^(-2i / head_dim), the angle in double, cos and sin rounded to float. */
static void rope(float *v, int heads, int head_dim, int32_t pos, float base)
{
    double log_base = k_log((double)base);

    for (int i = 0; i < head_dim; i += 2) {
        double theta = (double)pos * k_exp(-(double)i / head_dim * log_base);
        float cos_theta = (float)k_cos(theta), sin_theta = (float)k_sin(theta);
        for (int h = 0; h < heads; h++) {
            float *pair = v + h * head_dim + i;
            float x0 = pair[0], x1 = pair[1];
            pair[0] = x0 * cos_theta - x1 * sin_theta;
            pair[1] = x0 * sin_theta + x1 * cos_theta;
        }
    }
}

/* ggml_soft_max_ext without a mask: scaled, maximum subtracted, ggml's expf,
 * the sum in double, times its reciprocal. */
static void softmax(float *x, int n, float scale)
{
    float max;
    double total = 0.0;
    float inverse;

    for (int i = 0; i < n; i++)
        x[i] *= scale;
    max = x[0];
    for (int i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    for (int i = 0; i < n; i++) {
        x[i] = ggml_expf(x[i] - max);
        total += x[i];
    }
    inverse = (float)(1.0 / total);
    for (int i = 0; i < n; i++)
        x[i] *= inverse;
}

/* Grouped-query attention of query q (dim) at pos over the layer's cache
 * (seq_len, kv_dim) into out (dim). The query and the probabilities are
 * rounded to f16, as ggml converts them to the f16 cache's type, and both
 * products are ggml_vec_dot_f16's. */
static void attention(struct gguf_llama_model *model, const float *q, float *out, uint64_t layer_offset, int32_t pos)
{
    const struct gguf_llama_config *c = &model->config;
    struct gguf_llama_state *s = &model->state;
    int hd = c->head_dim, kv_dim = c->n_kv_heads * hd, group = c->n_heads / c->n_kv_heads;
    float scale = (float)(1.0 / k_sqrtf((float)hd));
    uint16_t *halves = (uint16_t *)s->xq;           /* (max(hd, pos + 1)) f16 scratch */

    for (int h = 0; h < c->n_heads; h++) {
        const uint16_t *keys = s->key_cache + layer_offset + (uint64_t)(h / group) * hd;   /* (pos + 1, hd) strided */
        const uint16_t *values = s->value_cache + layer_offset + (uint64_t)(h / group) * hd;
        float *o = out + h * hd;

        for (int i = 0; i < hd; i++)
            halves[i] = fp32_to_fp16(q[h * hd + i]);
        for (int t = 0; t <= pos; t++)
            s->att[t] = model->dot_order == DOT_ORDER_AVX2 ? dot_f16(keys + (uint64_t)t * kv_dim, halves, hd)
                                                           : dot_f16_scalar(keys + (uint64_t)t * kv_dim, 1, halves, hd);
        softmax(s->att, pos + 1, scale);
        for (int t = 0; t <= pos; t++)
            halves[t] = fp32_to_fp16(s->att[t]);
        for (int i = 0; i < hd; i++)
            o[i] = model->dot_order == DOT_ORDER_AVX2 ? dot_f16_padded(values + i, (uint64_t)kv_dim, halves, pos + 1)
                                                      : dot_f16_scalar(values + i, (uint64_t)kv_dim, halves, pos + 1);
    }
}

/* ggml_v_silu(gate) * up, in float. */
static void swiglu(float *gate, const float *up, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        gate[i] = gate[i] / (1.0f + ggml_expf(0.0f - gate[i])) * up[i];
}

static void add(float *x, const float *y, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        x[i] += y[i];
}

static void attention_block(struct gguf_llama_model *m, const struct gguf_llama_layer *layer, int l, int count,
                            int32_t pos)
{
    const struct gguf_llama_config *c = &m->config;
    struct gguf_llama_state *s = &m->state;
    int d = c->dim, kv_dim = c->n_kv_heads * c->head_dim;
    uint64_t layer_offset = (uint64_t)l * c->seq_len * kv_dim;           /* (layer, seq_len, kv_dim) */

    for (int t = 0; t < count; t++)
        rms_norm(s->xb + t * d, s->x + t * d, layer->attn_norm, d, c->rms_eps);
    matmul(m, s->q, &layer->wq, s->xb, count);
    matmul(m, s->k, &layer->wk, s->xb, count);
    matmul(m, s->v, &layer->wv, s->xb, count);
    for (int t = 0; t < count; t++) {
        uint64_t cached = layer_offset + (uint64_t)(pos + t) * kv_dim;
        rope(s->q + t * d, c->n_heads, c->head_dim, pos + t, c->rope_base);
        rope(s->k + t * kv_dim, c->n_kv_heads, c->head_dim, pos + t, c->rope_base);
        for (int i = 0; i < kv_dim; i++) {
            s->key_cache[cached + i] = fp32_to_fp16(s->k[t * kv_dim + i]);
            s->value_cache[cached + i] = fp32_to_fp16(s->v[t * kv_dim + i]);
        }
    }
    for (int t = 0; t < count; t++)                 /* each position sees the cache up to itself */
        attention(m, s->q + t * d, s->xb + t * d, layer_offset, pos + t);
    matmul(m, s->xb2, &layer->wo, s->xb, count);
    add(s->x, s->xb2, (uint64_t)count * d);
}

static void feed_forward_block(struct gguf_llama_model *m, const struct gguf_llama_layer *layer, int count)
{
    const struct gguf_llama_config *c = &m->config;
    struct gguf_llama_state *s = &m->state;
    int d = c->dim;

    for (int t = 0; t < count; t++)
        rms_norm(s->xb + t * d, s->x + t * d, layer->ffn_norm, d, c->rms_eps);
    matmul(m, s->hb, &layer->gate, s->xb, count);
    matmul(m, s->hb2, &layer->up, s->xb, count);
    swiglu(s->hb, s->hb2, (uint64_t)count * c->hidden_dim);
    matmul(m, s->xb, &layer->down, s->hb, count);
    add(s->x, s->xb, (uint64_t)count * d);
}

float *gguf_llama_forward(struct gguf_llama_model *m, const int32_t *tokens, int count, int32_t pos)
{
    const struct gguf_llama_config *c = &m->config;
    struct gguf_llama_state *s = &m->state;
    int d = c->dim;
    float *last = s->x + (uint64_t)(count - 1) * d;

    if (count < 1 || count > GGUF_MODEL_MAX_BATCH || pos < 0 || pos + count > c->seq_len)
        return 0;
    for (int t = 0; t < count; t++) {
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return 0;
        embedding_row(s->x + t * d, &m->token_embedding, tokens[t]);
    }
    for (int l = 0; l < c->n_layers; l++) {
        attention_block(m, &m->layers[l], l, count, pos);
        feed_forward_block(m, &m->layers[l], count);
    }
    rms_norm(s->xb, last, m->output_norm, d, c->rms_eps);
    matmul(m, s->logits, &m->output, s->xb, 1);
    return s->logits;
}

float *gguf_llama_forward_one(struct gguf_llama_model *m, int32_t token, int32_t pos)
{
    return gguf_llama_forward(m, &token, 1, pos);
}
