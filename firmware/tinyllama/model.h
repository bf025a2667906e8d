/* TinyLlama (Llama-2 architecture) in the guest: the model, its run state and
 * the inference kernels. Weights stay in the checkpoint module (pointers into
 * it, no copy); the heap holds the model structure and the run state. */
#ifndef TINYLLAMA_MODEL_H
#define TINYLLAMA_MODEL_H
#include <stddef.h>
#include <stdint.h>

#define TINYLLAMA_HEADER_INTS 7

struct tinyllama_config {
    int32_t dim;                /* transformer dimension                         */
    int32_t hidden_dim;         /* feed-forward dimension                        */
    int32_t n_layers;
    int32_t n_heads;            /* query heads                                   */
    int32_t n_kv_heads;         /* key/value heads (fewer: grouped-query)        */
    int32_t vocab_size;
    int32_t seq_len;
    int32_t shared_classifier;  /* 1: the classifier is the embedding table      */
};

struct tinyllama_layer {        /* pointers into the checkpoint module */
    const float *rms_att;       /* (dim)                  */
    const float *wq;            /* (dim, dim)             */
    const float *wk;            /* (kv_dim, dim)          */
    const float *wv;            /* (kv_dim, dim)          */
    const float *wo;            /* (dim, dim)             */
    const float *rms_ffn;       /* (dim)                  */
    const float *w1;            /* (hidden_dim, dim)      */
    const float *w2;            /* (dim, hidden_dim)      */
    const float *w3;            /* (hidden_dim, dim)      */
};

struct tinyllama_state {        /* activations and the KV cache, in the heap */
    float *x;                   /* (dim) residual stream           */
    float *xb;                  /* (dim)                           */
    float *xb2;                 /* (dim)                           */
    float *hb;                  /* (hidden_dim)                    */
    float *hb2;                 /* (hidden_dim)                    */
    float *q;                   /* (dim)                           */
    float *att;                 /* (n_heads, seq_len)              */
    float *logits;              /* (vocab_size)                    */
    float *key_cache;           /* (layer, seq_len, kv_dim)        */
    float *value_cache;         /* (layer, seq_len, kv_dim)        */
};

struct tinyllama_model {
    struct tinyllama_config config;
    const float *token_embedding;       /* (vocab_size, dim)   */
    const float *rms_final;             /* (dim)               */
    const float *wcls;                  /* (vocab_size, dim)   */
    struct tinyllama_layer *layers;     /* (n_layers)          */
    struct tinyllama_state state;
};

/* Model creation steps, in the order the orchestrator runs them. */
enum tinyllama_step {
    STEP_ALLOCATE_STRUCTURE = 1,
    STEP_SET_CONFIG,
    STEP_ALLOCATE_LAYERS,
    STEP_SET_UP_LAYERS,
    STEP_SET_UP_FINAL_NORM,
    STEP_ALLOCATE_RUN_STATE,
};

struct tinyllama_failure {
    enum tinyllama_step step;   /* the step that failed (0: none)                 */
    uint64_t needed;            /* bytes it needed                                */
    uint64_t available;         /* bytes the heap (or the module) had             */
};

/* Creates the model from the checkpoint in [checkpoint, checkpoint + size),
 * with the run state sized for seq_len positions (0: the checkpoint's).
 * Returns the model, or NULL with *failure saying which step failed and why. */
struct tinyllama_model *tinyllama_create(const void *checkpoint, uint64_t size, int32_t seq_len,
                                         struct tinyllama_failure *failure);

/* The single-purpose steps (exported for the simulator's tests). Each returns
 * 0, or -1 after filling *failure. */
int tinyllama_allocate_structure(struct tinyllama_model **model, struct tinyllama_failure *failure);
int tinyllama_set_config(struct tinyllama_model *model, const void *checkpoint, uint64_t size,
                         struct tinyllama_failure *failure);
int tinyllama_allocate_layers(struct tinyllama_model *model, struct tinyllama_failure *failure);
int tinyllama_set_up_layers(struct tinyllama_model *model, const void *checkpoint, uint64_t size,
                            struct tinyllama_failure *failure);
int tinyllama_set_up_final_norm(struct tinyllama_model *model, const void *checkpoint, uint64_t size,
                                struct tinyllama_failure *failure);
int tinyllama_allocate_run_state(struct tinyllama_model *model, int32_t seq_len, struct tinyllama_failure *failure);

/* Bytes the run state needs for seq_len positions. */
uint64_t tinyllama_run_state_bytes(const struct tinyllama_config *config, int32_t seq_len);

/* Prints "model: <step> failed: needs N bytes, M available". */
void tinyllama_print_failure(const struct tinyllama_failure *failure);

/* The forward pass: logits (vocab_size) for token at position pos, written
 * into model->state.logits, which is returned. pos must be < seq_len. */
float *tinyllama_forward(struct tinyllama_model *model, int32_t token, int32_t pos);

/* Kernels (llama2.c run.c semantics). */
void tinyllama_rmsnorm(float *out, const float *x, const float *weight, int size);
void tinyllama_softmax(float *x, int size);
void tinyllama_matmul(float *out, const float *x, const float *w, int n, int d);   /* w (d, n) */

#endif
