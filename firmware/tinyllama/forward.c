/* The forward pass (llama2.c run.c's forward(), kernel for kernel). */
#include "tinyllama/model.h"
#include "kernel_lib/libc/string.h"
#include "kernel_lib/libm/math.h"

#define RMS_EPS    1e-5f
#define ROPE_THETA 10000.0f

void tinyllama_rmsnorm(float *out, const float *x, const float *weight, int size)
{
    float ss = 0.0f;

    for (int j = 0; j < size; j++)
        ss += x[j] * x[j];
    ss = 1.0f / k_sqrtf(ss / size + RMS_EPS);
    for (int j = 0; j < size; j++)
        out[j] = weight[j] * (ss * x[j]);
}

void tinyllama_softmax(float *x, int size)
{
    float max = x[0], sum = 0.0f;

    for (int i = 1; i < size; i++)
        if (x[i] > max)
            max = x[i];
    for (int i = 0; i < size; i++) {
        x[i] = k_expf(x[i] - max);
        sum += x[i];
    }
    for (int i = 0; i < size; i++)
        x[i] /= sum;
}

void tinyllama_matmul(float *out, const float *x, const float *w, int n, int d)
{
    /* W (d, n) @ x (n) -> out (d): one dot product per output row */
    for (int i = 0; i < d; i++) {
        const float *row = w + (uint64_t)i * n;
        float value = 0.0f;
        for (int j = 0; j < n; j++)
            value += row[j] * x[j];
        out[i] = value;
    }
}

/* Rotary embedding of q (dim) and k (kv_dim) at pos, pair by pair. */
static void rope(float *q, float *k, int dim, int kv_dim, int head_size, int pos)
{
    for (int i = 0; i < dim; i += 2) {
        int head_dim = i % head_size;
        float freq = 1.0f / k_powf(ROPE_THETA, head_dim / (float)head_size);
        float angle = pos * freq;
        float fcr = k_cosf(angle), fci = k_sinf(angle);
        int rotations = i < kv_dim ? 2 : 1;     /* q always, k only inside kv_dim */

        for (int v = 0; v < rotations; v++) {
            float *vector = v == 0 ? q : k;
            float v0 = vector[i], v1 = vector[i + 1];
            vector[i] = v0 * fcr - v1 * fci;
            vector[i + 1] = v0 * fci + v1 * fcr;
        }
    }
}

/* Multi-head attention with grouped-query KV heads over positions 0..pos. */
static void attention(struct tinyllama_model *m, int layer_offset, int pos)
{
    const struct tinyllama_config *c = &m->config;
    struct tinyllama_state *s = &m->state;
    int head_size = c->dim / c->n_heads;
    int kv_dim = c->dim * c->n_kv_heads / c->n_heads;
    int kv_mul = c->n_heads / c->n_kv_heads;     /* query heads per KV head */
    float scale = k_sqrtf((float)head_size);

    for (int h = 0; h < c->n_heads; h++) {
        const float *q = s->q + h * head_size;
        float *att = s->att + h * c->seq_len;
        float *xb = s->xb + h * head_size;

        for (int t = 0; t <= pos; t++) {
            const float *k = s->key_cache + layer_offset + t * kv_dim + (h / kv_mul) * head_size;
            float score = 0.0f;
            for (int i = 0; i < head_size; i++)
                score += q[i] * k[i];
            att[t] = score / scale;
        }
        tinyllama_softmax(att, pos + 1);
        memset(xb, 0, head_size * sizeof(float));
        for (int t = 0; t <= pos; t++) {
            const float *v = s->value_cache + layer_offset + t * kv_dim + (h / kv_mul) * head_size;
            for (int i = 0; i < head_size; i++)
                xb[i] += att[t] * v[i];
        }
    }
}

/* SwiGLU feed-forward: w2 (silu(w1 x) * w3 x). */
static void feed_forward(struct tinyllama_model *m, const struct tinyllama_layer *layer)
{
    const struct tinyllama_config *c = &m->config;
    struct tinyllama_state *s = &m->state;

    tinyllama_matmul(s->hb, s->xb, layer->w1, c->dim, c->hidden_dim);
    tinyllama_matmul(s->hb2, s->xb, layer->w3, c->dim, c->hidden_dim);
    for (int i = 0; i < c->hidden_dim; i++) {
        float value = s->hb[i];
        value *= 1.0f / (1.0f + k_expf(-value));          /* silu */
        s->hb[i] = value * s->hb2[i];
    }
    tinyllama_matmul(s->xb, s->hb, layer->w2, c->hidden_dim, c->dim);
}

float *tinyllama_forward(struct tinyllama_model *m, int32_t token, int32_t pos)
{
    const struct tinyllama_config *c = &m->config;
    struct tinyllama_state *s = &m->state;
    int dim = c->dim, head_size = dim / c->n_heads;
    int kv_dim = dim * c->n_kv_heads / c->n_heads;

    memcpy(s->x, m->token_embedding + (uint64_t)token * dim, dim * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        const struct tinyllama_layer *layer = &m->layers[l];
        int layer_offset = l * c->seq_len * kv_dim;                 /* (layer, seq_len, kv_dim) */
        float *k = s->key_cache + layer_offset + pos * kv_dim;
        float *v = s->value_cache + layer_offset + pos * kv_dim;

        tinyllama_rmsnorm(s->xb, s->x, layer->rms_att, dim);
        tinyllama_matmul(s->q, s->xb, layer->wq, dim, dim);
        tinyllama_matmul(k, s->xb, layer->wk, dim, kv_dim);
        tinyllama_matmul(v, s->xb, layer->wv, dim, kv_dim);
        rope(s->q, k, dim, kv_dim, head_size, pos);
        attention(m, layer_offset, pos);
        tinyllama_matmul(s->xb2, s->xb, layer->wo, dim, dim);
        for (int i = 0; i < dim; i++)
            s->x[i] += s->xb2[i];
        tinyllama_rmsnorm(s->xb, s->x, layer->rms_ffn, dim);
        feed_forward(m, layer);
        for (int i = 0; i < dim; i++)
            s->x[i] += s->xb[i];
    }
    tinyllama_rmsnorm(s->x, s->x, m->rms_final, dim);
    tinyllama_matmul(s->logits, s->x, m->wcls, dim, c->vocab_size);
    return s->logits;
}
