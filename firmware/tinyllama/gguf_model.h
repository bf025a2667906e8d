/* A llama-architecture model from a GGUF module (SmolLM2, TinyLlama...):
 * weights used in place in the module (Q4_1, Q8_0, F16 or F32), the run state
 * and an f16 KV cache in the heap, a forward pass over a batch of positions. */
#ifndef TINYLLAMA_GGUF_MODEL_H
#define TINYLLAMA_GGUF_MODEL_H
#include <stdint.h>
#include "gguf/gguf.h"
#include "tinyllama/quant.h"

#define GGUF_MODEL_MAX_BATCH 32     /* prompt positions evaluated per weight pass */
#define GGUF_MODEL_ERROR_MAX 200

struct gguf_llama_config {
    int32_t dim;                /* llama.embedding_length                      */
    int32_t hidden_dim;         /* llama.feed_forward_length                   */
    int32_t n_layers;           /* llama.block_count                           */
    int32_t n_heads;            /* llama.attention.head_count                  */
    int32_t n_kv_heads;         /* llama.attention.head_count_kv               */
    int32_t head_dim;           /* llama.rope.dimension_count (dim / n_heads)  */
    int32_t vocab_size;         /* rows of token_embd.weight                   */
    int32_t trained_context;    /* llama.context_length                        */
    int32_t seq_len;            /* positions the KV cache holds                */
    float rope_base;            /* llama.rope.freq_base                        */
    float rms_eps;              /* llama.attention.layer_norm_rms_epsilon      */
};

struct gguf_matrix {            /* (rows, n) in the module */
    uint32_t type;              /* enum ggml_type */
    int32_t n;
    int32_t rows;
    const void *data;
};

struct gguf_llama_layer {
    const float *attn_norm;     /* (dim) */
    const float *ffn_norm;      /* (dim) */
    struct gguf_matrix wq;      /* (dim, dim)          */
    struct gguf_matrix wk;      /* (kv_dim, dim)       */
    struct gguf_matrix wv;      /* (kv_dim, dim)       */
    struct gguf_matrix wo;      /* (dim, dim)          */
    struct gguf_matrix gate;    /* (hidden_dim, dim)   */
    struct gguf_matrix up;      /* (hidden_dim, dim)   */
    struct gguf_matrix down;    /* (dim, hidden_dim)   */
};

struct gguf_llama_state {       /* in the heap; B = GGUF_MODEL_MAX_BATCH */
    float *x;                   /* (B, dim) residual stream           */
    float *xb;                  /* (B, dim)                           */
    float *xb2;                 /* (B, dim)                           */
    float *q;                   /* (B, dim)                           */
    float *k;                   /* (B, kv_dim)                        */
    float *v;                   /* (B, kv_dim)                        */
    float *hb;                  /* (B, hidden_dim)                    */
    float *hb2;                 /* (B, hidden_dim)                    */
    void *xq;                   /* (B, hidden_dim / 32) quantized rows, or f16 (B, hidden_dim) */
    float *att;                 /* (seq_len) one head's scores        */
    float *logits;              /* (vocab_size) of the batch's last position */
    uint16_t *key_cache;        /* (layer, seq_len, kv_dim) f16       */
    uint16_t *value_cache;      /* (layer, seq_len, kv_dim) f16       */
};

struct gguf_llama_model {
    struct gguf_file file;
    struct gguf_llama_config config;
    struct gguf_matrix token_embedding;     /* (vocab_size, dim)  */
    struct gguf_matrix output;              /* (vocab_size, dim): token_embd when tied */
    const float *output_norm;               /* (dim)              */
    struct gguf_llama_layer *layers;        /* (n_layers)         */
    struct gguf_llama_state state;
    enum dot_order dot_order;               /* how quantized dot products add up */
    char error[GGUF_MODEL_ERROR_MAX];       /* why creation failed, one line */
};

/* From the GGUF module file (opened by gguf_open: its header is walked once,
 * the tokenizer reads the same file), checks every tensor the architecture needs (name,
 * type, shape), allocates the run state for the largest context <= seq_len
 * (0: the trained context) that the heap holds with keep_free bytes to spare
 * (and says so when that is less than asked). Returns 0, or -1 with
 * model->error saying what is missing, unsupported or does not fit. */
int gguf_llama_create(struct gguf_llama_model *model, const struct gguf_file *file, int32_t seq_len,
                      uint64_t keep_free);

/* Bytes of the run state and KV cache for seq_len positions. */
uint64_t gguf_llama_state_bytes(const struct gguf_llama_config *config, int32_t seq_len);

/* Runs count (<= GGUF_MODEL_MAX_BATCH) tokens at positions pos .. pos + count - 1
 * through the model, filling the KV cache. Returns the logits (vocab_size) after
 * the last one, or NULL if the positions do not fit the context. */
float *gguf_llama_forward(struct gguf_llama_model *model, const int32_t *tokens, int count, int32_t pos);

/* Host-call entry: one token, as tinyllama_forward. */
float *gguf_llama_forward_one(struct gguf_llama_model *model, int32_t token, int32_t pos);

#endif
