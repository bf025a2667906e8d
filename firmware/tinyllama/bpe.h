/* GPT-2 byte-level BPE, as llama.cpp tokenizes for GGUF models whose
 * tokenizer.ggml.model is "gpt2" (pre-tokenizer "smollm"):
 *
 *  - pre-tokenization: every digit (\p{N}) alone, then GPT-2's pattern on the
 *    text between: 's 't 're 've 'm 'll 'd | ' '?\p{L}+ | ' '?\p{N}+ |
 *    ' '?[^\s\p{L}\p{N}]+ | \s+ not followed by a non-space | \s+ ;
 *  - each piece's UTF-8 bytes become GPT-2's printable characters (a byte that
 *    is printable Latin-1 stands for itself, the others for U+0100 and up);
 *  - adjacent symbols merge by the lowest rank in tokenizer.ggml.merges until
 *    no pair has one.
 * Decoding maps the characters back to bytes: a character whose bytes span two
 * tokens is whole once both are decoded. */
#ifndef TINYLLAMA_BPE_H
#define TINYLLAMA_BPE_H
#include <stddef.h>
#include <stdint.h>
#include "gguf/gguf.h"

#define BPE_TOKEN_NORMAL        1   /* tokenizer.ggml.token_type values */
#define BPE_TOKEN_CONTROL       3
#define BPE_TOKEN_USER_DEFINED  4
#define BPE_ERROR_MAX           160

struct bpe_merge {              /* one slot of the merge table */
    int32_t left;               /* -1: empty slot */
    int32_t right;
    int32_t rank;
    int32_t merged;
};

struct bpe_tokenizer {
    int32_t vocab_size;
    const char **text;          /* (vocab) token text, in the module, not terminated */
    uint32_t *length;           /* (vocab) */
    uint8_t *kind;              /* (vocab) BPE_TOKEN_* */
    int32_t *token_slots;       /* (token_mask + 1) text -> id, -1 empty */
    uint32_t token_mask;
    struct bpe_merge *merge_slots; /* (merge_mask + 1) (left, right) -> rank, merged */
    uint32_t merge_mask;
    int32_t byte_token[256];    /* the single-character token of each byte */
    int32_t bos;
    int32_t eos;
    char error[BPE_ERROR_MAX];
};

/* Reads tokenizer.ggml.{model,tokens,token_type,merges,bos_token_id,
 * eos_token_id} and builds the tables in the heap. Returns 0, or -1 with
 * t->error naming the missing or malformed key. */
int bpe_init(struct bpe_tokenizer *t, struct gguf_file *file);

/* The id of the token whose text is text[0..length), or -1. */
int32_t bpe_token_id(const struct bpe_tokenizer *t, const char *text, size_t length);

/* Appends the ids of text[0..length) (no special tokens recognised) to out.
 * Returns the number appended, or -1 if more than max would be needed or the
 * heap cannot hold the scratch. */
int bpe_encode(const struct bpe_tokenizer *t, const char *text, size_t length, int32_t *out, int max);

/* The bytes token stands for (control tokens: none). Returns the count, or -1
 * if token is out of range or out is too small. */
int bpe_decode(const struct bpe_tokenizer *t, int32_t token, uint8_t *out, int max);

#endif
