/* Model creation: a small orchestrator over single-purpose steps, each of
 * which checks its result and says what it needed when it fails. */
#include "tinyllama/model.h"
#include "kernel_lib/io/kprintf.h"
#include "kernel_lib/libc/string.h"
#include "kernel_lib/memory/malloc_bump.h"

static const char *const step_names[] = {
    [STEP_ALLOCATE_STRUCTURE] = "allocate the model structure",
    [STEP_SET_CONFIG] = "set the configuration from the checkpoint header",
    [STEP_ALLOCATE_LAYERS] = "allocate the layers array",
    [STEP_SET_UP_LAYERS] = "set up each layer",
    [STEP_SET_UP_FINAL_NORM] = "set up the final norm",
    [STEP_ALLOCATE_RUN_STATE] = "allocate the run state",
};

static uint64_t heap_remaining(void)
{
    struct heap_stats stats;

    heap_stats(&stats);
    return stats.remaining;
}

static int fail(struct tinyllama_failure *failure, enum tinyllama_step step, uint64_t needed, uint64_t available)
{
    failure->step = step;
    failure->needed = needed;
    failure->available = available;
    return -1;
}

/* Allocates bytes for step, or records the failure. */
static void *allocate(uint64_t bytes, enum tinyllama_step step, struct tinyllama_failure *failure)
{
    uint64_t available = heap_remaining();
    void *block = calloc(1, bytes);

    if (block == 0)
        fail(failure, step, bytes, available);
    return block;
}

static uint64_t kv_dim(const struct tinyllama_config *c)
{
    return (uint64_t)c->dim * c->n_kv_heads / c->n_heads;
}

int tinyllama_allocate_structure(struct tinyllama_model **model, struct tinyllama_failure *failure)
{
    *model = allocate(sizeof(**model), STEP_ALLOCATE_STRUCTURE, failure);
    return *model ? 0 : -1;
}

int tinyllama_set_config(struct tinyllama_model *model, const void *checkpoint, uint64_t size,
                         struct tinyllama_failure *failure)
{
    const int32_t *header = checkpoint;
    struct tinyllama_config *c = &model->config;

    if (size < TINYLLAMA_HEADER_INTS * sizeof(int32_t))
        return fail(failure, STEP_SET_CONFIG, TINYLLAMA_HEADER_INTS * sizeof(int32_t), size);
    c->dim = header[0];
    c->hidden_dim = header[1];
    c->n_layers = header[2];
    c->n_heads = header[3];
    c->n_kv_heads = header[4];
    c->shared_classifier = header[5] > 0;
    c->vocab_size = header[5] > 0 ? header[5] : -header[5];
    c->seq_len = header[6];
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0
        || c->vocab_size <= 0 || c->seq_len <= 0 || c->dim % c->n_heads || c->n_heads % c->n_kv_heads
        || (c->dim / c->n_heads) % 2)
        return fail(failure, STEP_SET_CONFIG, 0, 0);
    return 0;
}

int tinyllama_allocate_layers(struct tinyllama_model *model, struct tinyllama_failure *failure)
{
    model->layers = allocate((uint64_t)model->config.n_layers * sizeof(struct tinyllama_layer),
                             STEP_ALLOCATE_LAYERS, failure);
    return model->layers ? 0 : -1;
}

/* Floats of the weights before the final norm, in llama2.c's legacy order. */
static uint64_t layer_weight_floats(const struct tinyllama_config *c)
{
    uint64_t d = c->dim, h = c->hidden_dim, kv = kv_dim(c);
    return 2 * d + d * d + 2 * kv * d + d * d + 3 * h * d;
}

int tinyllama_set_up_layers(struct tinyllama_model *model, const void *checkpoint, uint64_t size,
                            struct tinyllama_failure *failure)
{
    const struct tinyllama_config *c = &model->config;
    uint64_t d = c->dim, h = c->hidden_dim, kv = kv_dim(c), L = c->n_layers;
    uint64_t needed = TINYLLAMA_HEADER_INTS * 4 + 4 * ((uint64_t)c->vocab_size * d + L * layer_weight_floats(c));
    const float *p = (const float *)((const int32_t *)checkpoint + TINYLLAMA_HEADER_INTS);

    if (size < needed)
        return fail(failure, STEP_SET_UP_LAYERS, needed, size);
    model->token_embedding = p;
    p += (uint64_t)c->vocab_size * d;
    for (uint64_t l = 0; l < L; l++) {           /* each array is (layer, ...) */
        struct tinyllama_layer *layer = &model->layers[l];
        const float *base = p;
        layer->rms_att = base + l * d;
        base += L * d;
        layer->wq = base + l * d * d;
        base += L * d * d;
        layer->wk = base + l * kv * d;
        base += L * kv * d;
        layer->wv = base + l * kv * d;
        base += L * kv * d;
        layer->wo = base + l * d * d;
        base += L * d * d;
        layer->rms_ffn = base + l * d;
        base += L * d;
        layer->w1 = base + l * h * d;
        base += L * h * d;
        layer->w2 = base + l * d * h;
        base += L * d * h;
        layer->w3 = base + l * h * d;
    }
    return 0;
}

int tinyllama_set_up_final_norm(struct tinyllama_model *model, const void *checkpoint, uint64_t size,
                                struct tinyllama_failure *failure)
{
    const struct tinyllama_config *c = &model->config;
    uint64_t d = c->dim, head_size = d / c->n_heads;
    uint64_t before = TINYLLAMA_HEADER_INTS * 4 + 4 * ((uint64_t)c->vocab_size * d
                                                       + (uint64_t)c->n_layers * layer_weight_floats(c));
    uint64_t classifier = before + 4 * (d + (uint64_t)c->seq_len * head_size);
    uint64_t needed = classifier + (c->shared_classifier ? 0 : 4 * (uint64_t)c->vocab_size * d);

    if (size < needed)
        return fail(failure, STEP_SET_UP_FINAL_NORM, needed, size);
    model->rms_final = (const float *)((const uint8_t *)checkpoint + before);
    /* skipped: freq_cis_real and freq_cis_imag, (seq_len, head_size / 2) each */
    model->wcls = c->shared_classifier ? model->token_embedding
                                       : (const float *)((const uint8_t *)checkpoint + classifier);
    return 0;
}

uint64_t tinyllama_run_state_bytes(const struct tinyllama_config *c, int32_t seq_len)
{
    uint64_t d = c->dim, h = c->hidden_dim, kv = kv_dim(c), L = c->n_layers, S = (uint64_t)seq_len;
    uint64_t floats = 4 * d + 2 * h + d + (uint64_t)c->n_heads * S + (uint64_t)c->vocab_size + 2 * L * S * kv;
    return 4 * floats + 10 * (HEAP_HEADER_SIZE + HEAP_ALIGN);    /* ten blocks and their headers */
}

int tinyllama_allocate_run_state(struct tinyllama_model *model, int32_t seq_len, struct tinyllama_failure *failure)
{
    struct tinyllama_config *c = &model->config;
    struct tinyllama_state *s = &model->state;
    uint64_t d = c->dim, h = c->hidden_dim, kv = kv_dim(c), L = c->n_layers, S;
    uint64_t needed, available = heap_remaining();

    if (seq_len <= 0 || seq_len > c->seq_len)
        seq_len = c->seq_len;
    S = (uint64_t)seq_len;
    needed = tinyllama_run_state_bytes(c, seq_len);
    if (needed > available)                       /* say so before allocating anything */
        return fail(failure, STEP_ALLOCATE_RUN_STATE, needed, available);
    s->x = calloc(d, sizeof(float));
    s->xb = calloc(d, sizeof(float));
    s->xb2 = calloc(d, sizeof(float));
    s->hb = calloc(h, sizeof(float));
    s->hb2 = calloc(h, sizeof(float));
    s->q = calloc(d, sizeof(float));
    s->att = calloc((uint64_t)c->n_heads * S, sizeof(float));
    s->logits = calloc((uint64_t)c->vocab_size, sizeof(float));
    s->key_cache = calloc(L * S * kv, sizeof(float));
    s->value_cache = calloc(L * S * kv, sizeof(float));
    if (!s->x || !s->xb || !s->xb2 || !s->hb || !s->hb2 || !s->q || !s->att || !s->logits
        || !s->key_cache || !s->value_cache)
        return fail(failure, STEP_ALLOCATE_RUN_STATE, needed, available);
    c->seq_len = seq_len;
    return 0;
}

struct tinyllama_model *tinyllama_create(const void *checkpoint, uint64_t size, int32_t seq_len,
                                         struct tinyllama_failure *failure)
{
    struct tinyllama_model *model = 0;

    failure->step = 0;
    if (tinyllama_allocate_structure(&model, failure) != 0
        || tinyllama_set_config(model, checkpoint, size, failure) != 0
        || tinyllama_allocate_layers(model, failure) != 0
        || tinyllama_set_up_layers(model, checkpoint, size, failure) != 0
        || tinyllama_set_up_final_norm(model, checkpoint, size, failure) != 0
        || tinyllama_allocate_run_state(model, seq_len, failure) != 0)
        return 0;
    return model;
}

void tinyllama_print_failure(const struct tinyllama_failure *failure)
{
    const char *name = failure->step > 0 && failure->step <= STEP_ALLOCATE_RUN_STATE
                           ? step_names[failure->step] : "?";

    kprintf("model: step %d (%s) failed: needs %lu bytes, %lu available\n", (int)failure->step, name,
            (unsigned long)failure->needed, (unsigned long)failure->available);
}
