/* Model creation from a GGUF module: the configuration from its metadata,
 * every tensor checked for name, type and shape, the run state sized to fit. */
#include "tinyllama/gguf_model.h"
#include "kernel_lib/io/kprintf.h"
#include "kernel_lib/libc/string.h"
#include "kernel_lib/memory/malloc_bump.h"

#define ARCHITECTURE       "llama"
#define DEFAULT_ROPE_BASE  10000.0f
#define DEFAULT_RMS_EPS    1e-5f
#define TENSOR_NAME_MAX    64
#define STATE_BLOCKS       13          /* heap blocks the run state allocates */

static int failed(struct gguf_llama_model *model, const char *line)
{
    strncpy(model->error, line, sizeof(model->error) - 1);
    model->error[sizeof(model->error) - 1] = 0;
    return -1;
}

static int config_uint(struct gguf_llama_model *model, const char *key, int32_t *out)
{
    uint64_t value;

    if (gguf_get_uint(&model->file, key, &value) != 0)
        return failed(model, model->file.error);
    if (value == 0 || value > INT32_MAX) {
        ksnprintf(model->error, sizeof(model->error), "gguf: metadata key '%s' is %lu (outside 1..2^31-1)", key,
                  (unsigned long)value);
        return -1;
    }
    *out = (int32_t)value;
    return 0;
}

/* An optional key: its value, or fallback when it is absent. */
static int config_uint_or(struct gguf_llama_model *model, const char *key, int32_t fallback, int32_t *out)
{
    *out = fallback;
    return gguf_has_key(&model->file, key) ? config_uint(model, key, out) : 0;
}

static int config_float_or(struct gguf_llama_model *model, const char *key, float fallback, float *out)
{
    *out = fallback;
    if (gguf_has_key(&model->file, key) && gguf_get_float(&model->file, key, out) != 0)
        return failed(model, model->file.error);
    return 0;
}

static int read_config(struct gguf_llama_model *model)
{
    struct gguf_llama_config *c = &model->config;
    struct gguf_string architecture;

    if (gguf_get_string(&model->file, "general.architecture", &architecture) != 0)
        return failed(model, model->file.error);
    if (!gguf_string_equals(architecture, ARCHITECTURE))
        return failed(model, "gguf: general.architecture is not 'llama' (the only one this firmware runs)");
    if (config_uint(model, "llama.embedding_length", &c->dim) || config_uint(model, "llama.feed_forward_length", &c->hidden_dim)
        || config_uint(model, "llama.block_count", &c->n_layers) || config_uint(model, "llama.attention.head_count", &c->n_heads)
        || config_uint_or(model, "llama.attention.head_count_kv", c->n_heads, &c->n_kv_heads)
        || config_uint(model, "llama.context_length", &c->trained_context)
        || config_uint_or(model, "llama.rope.dimension_count", c->dim / c->n_heads, &c->head_dim)
        || config_float_or(model, "llama.rope.freq_base", DEFAULT_ROPE_BASE, &c->rope_base)
        || config_float_or(model, "llama.attention.layer_norm_rms_epsilon", DEFAULT_RMS_EPS, &c->rms_eps))
        return -1;
    if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads || c->head_dim != c->dim / c->n_heads || c->head_dim % 2
        || c->dim % QK || c->hidden_dim % QK) {
        ksnprintf(model->error, sizeof(model->error),
                  "gguf: inconsistent shape: embedding %d, %d heads, %d KV heads, head dim %d, feed-forward %d "
                  "(needs whole heads, an even head dim, multiples of 32)", c->dim, c->n_heads, c->n_kv_heads,
                  c->head_dim, c->hidden_dim);
        return -1;
    }
    return 0;
}

/* The tensor name with shape (n, rows) (rows 1: a vector), as a matrix. */
static int tensor(struct gguf_llama_model *model, const char *name, int64_t n, int64_t rows, struct gguf_matrix *out)
{
    struct gguf_tensor t;

    if (gguf_get_tensor(&model->file, name, &t) != 0)
        return failed(model, model->file.error);
    if ((int64_t)t.dims[0] != n || (rows >= 0 && (int64_t)t.dims[1] != rows) || t.dims[2] != 1 || t.dims[3] != 1) {
        ksnprintf(model->error, sizeof(model->error), "gguf: tensor '%s' has shape [%lu, %lu], expected [%ld, %ld]",
                  name, (unsigned long)t.dims[0], (unsigned long)t.dims[1], (long)n, (long)rows);
        return -1;
    }
    out->type = t.type;
    out->n = (int32_t)t.dims[0];
    out->rows = (int32_t)t.dims[1];
    out->data = t.data;
    return 0;
}

static int vector_f32(struct gguf_llama_model *model, const char *name, int64_t n, const float **out)
{
    struct gguf_matrix m;

    if (tensor(model, name, n, 1, &m) != 0)
        return -1;
    if (m.type != GGML_TYPE_F32) {
        ksnprintf(model->error, sizeof(model->error), "gguf: tensor '%s' is %s, expected F32", name,
                  ggml_type_name(m.type));
        return -1;
    }
    *out = m.data;
    return 0;
}

static int layer_tensor(struct gguf_llama_model *model, int layer, const char *suffix, int64_t n, int64_t rows,
                        struct gguf_matrix *out)
{
    char name[TENSOR_NAME_MAX];

    ksnprintf(name, sizeof(name), "blk.%d.%s.weight", layer, suffix);
    return tensor(model, name, n, rows, out);
}

static int layer_norm(struct gguf_llama_model *model, int layer, const char *suffix, const float **out)
{
    char name[TENSOR_NAME_MAX];

    ksnprintf(name, sizeof(name), "blk.%d.%s.weight", layer, suffix);
    return vector_f32(model, name, model->config.dim, out);
}

static int set_up_layers(struct gguf_llama_model *model)
{
    const struct gguf_llama_config *c = &model->config;
    int64_t d = c->dim, h = c->hidden_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;

    model->layers = calloc((uint64_t)c->n_layers, sizeof(struct gguf_llama_layer));
    if (model->layers == 0)
        return failed(model, "model: the heap cannot hold the layer table");
    for (int l = 0; l < c->n_layers; l++) {
        struct gguf_llama_layer *layer = &model->layers[l];
        if (layer_norm(model, l, "attn_norm", &layer->attn_norm) || layer_norm(model, l, "ffn_norm", &layer->ffn_norm)
            || layer_tensor(model, l, "attn_q", d, d, &layer->wq) || layer_tensor(model, l, "attn_k", d, kv, &layer->wk)
            || layer_tensor(model, l, "attn_v", d, kv, &layer->wv)
            || layer_tensor(model, l, "attn_output", d, d, &layer->wo)
            || layer_tensor(model, l, "ffn_gate", d, h, &layer->gate) || layer_tensor(model, l, "ffn_up", d, h, &layer->up)
            || layer_tensor(model, l, "ffn_down", h, d, &layer->down))
            return -1;
    }
    return 0;
}

static int set_up_embeddings(struct gguf_llama_model *model)
{
    struct gguf_llama_config *c = &model->config;

    if (tensor(model, "token_embd.weight", c->dim, -1, &model->token_embedding) != 0
        || vector_f32(model, "output_norm.weight", c->dim, &model->output_norm) != 0)
        return -1;
    c->vocab_size = model->token_embedding.rows;
    model->output = model->token_embedding;                 /* tied unless output.weight exists */
    if (gguf_has_tensor(&model->file, "output.weight"))
        return tensor(model, "output.weight", c->dim, c->vocab_size, &model->output);
    return 0;
}

/* The conversion scratch: quantized or f16 activations of a batch, or the
 * attention's f16 probabilities over seq_len positions. */
static uint64_t xq_bytes(const struct gguf_llama_config *c, int32_t seq_len)
{
    uint64_t widest = (uint64_t)(c->hidden_dim > c->dim ? c->hidden_dim : c->dim);
    uint64_t probabilities = (uint64_t)(seq_len > c->head_dim ? seq_len : c->head_dim) * sizeof(uint16_t);
    uint64_t quantized = widest / QK * sizeof(struct block_q8_1), half = widest * sizeof(uint16_t);

    uint64_t batch = GGUF_MODEL_MAX_BATCH * (quantized > half ? quantized : half);

    return batch > probabilities ? batch : probabilities;
}

/* Bytes for seq_len positions: activations, scores, logits, then the KV cache. */
uint64_t gguf_llama_state_bytes(const struct gguf_llama_config *c, int32_t seq_len)
{
    uint64_t B = GGUF_MODEL_MAX_BATCH, d = c->dim, h = c->hidden_dim, S = (uint64_t)seq_len;
    uint64_t kv = (uint64_t)c->n_kv_heads * c->head_dim;
    uint64_t floats = B * (4 * d + 2 * kv + 2 * h) + S + (uint64_t)c->vocab_size;

    return 4 * floats + xq_bytes(c, seq_len) + 2 * 2 * (uint64_t)c->n_layers * S * kv
           + STATE_BLOCKS * (HEAP_HEADER_SIZE + HEAP_ALIGN);
}

static int allocate_state(struct gguf_llama_model *model, int32_t seq_len, uint64_t keep_free)
{
    struct gguf_llama_config *c = &model->config;
    struct gguf_llama_state *s = &model->state;
    uint64_t B = GGUF_MODEL_MAX_BATCH, d = c->dim, h = c->hidden_dim, kv = (uint64_t)c->n_kv_heads * c->head_dim;
    uint64_t fixed = gguf_llama_state_bytes(c, 0), per_position = gguf_llama_state_bytes(c, 1) - fixed;
    struct heap_stats heap;

    heap_stats(&heap);
    heap.remaining = heap.remaining > keep_free ? heap.remaining - keep_free : 0;
    if (seq_len <= 0 || seq_len > c->trained_context)
        seq_len = c->trained_context;
    if (gguf_llama_state_bytes(c, seq_len) > heap.remaining) {     /* the largest context that fits */
        int32_t fits = heap.remaining > fixed + per_position ? (int32_t)((heap.remaining - fixed) / per_position) : 0;
        if (fits < 1) {
            ksnprintf(model->error, sizeof(model->error),
                      "model: the run state needs %lu bytes for one position, the heap has %lu",
                      (unsigned long)(fixed + per_position), (unsigned long)heap.remaining);
            return -1;
        }
        kprintf("model: context %d of %d positions (the run state for %d needs %lu bytes, the heap has %lu to spare)\n", fits,
                seq_len, seq_len, (unsigned long)gguf_llama_state_bytes(c, seq_len), (unsigned long)heap.remaining);
        seq_len = fits;
    }
    c->seq_len = seq_len;
    s->x = calloc(B * d, sizeof(float));
    s->xb = calloc(B * d, sizeof(float));
    s->xb2 = calloc(B * d, sizeof(float));
    s->q = calloc(B * d, sizeof(float));
    s->k = calloc(B * kv, sizeof(float));
    s->v = calloc(B * kv, sizeof(float));
    s->hb = calloc(B * h, sizeof(float));
    s->hb2 = calloc(B * h, sizeof(float));
    s->xq = calloc(1, xq_bytes(c, seq_len));
    s->att = calloc((uint64_t)seq_len, sizeof(float));
    s->logits = calloc((uint64_t)c->vocab_size, sizeof(float));
    /* not cleared: a position is written before attention reads it (62 MB of memset saved) */
    s->key_cache = malloc((uint64_t)c->n_layers * seq_len * kv * sizeof(uint16_t));
    s->value_cache = malloc((uint64_t)c->n_layers * seq_len * kv * sizeof(uint16_t));
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->hb || !s->hb2 || !s->xq || !s->att || !s->logits
        || !s->key_cache || !s->value_cache)
        return failed(model, "model: the heap cannot hold the run state");
    return 0;
}

int gguf_llama_create(struct gguf_llama_model *model, const struct gguf_file *file, int32_t seq_len,
                      uint64_t keep_free)
{
    model->file = *file;
    fp16_init();
    if (read_config(model) != 0 || set_up_embeddings(model) != 0 || set_up_layers(model) != 0
        || allocate_state(model, seq_len, keep_free) != 0)
        return -1;
    return 0;
}
