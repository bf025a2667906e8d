/* llama2.c's tokenizer format and BPE, on the module in place. */
#ifndef TINYLLAMA_TOKENIZER_H
#define TINYLLAMA_TOKENIZER_H
#include <stdint.h>

#define TOKEN_BOS 1
#define TOKEN_EOS 2

struct tinyllama_tokenizer {
    int32_t vocab_size;
    int32_t max_token_length;
    const char **pieces;        /* (vocab_size) pointers into the module */
    int32_t *lengths;           /* (vocab_size)                          */
    float *scores;              /* (vocab_size)                          */
    int32_t *table;             /* (table_size) open-addressing index: token id or -1 */
    uint32_t table_size;        /* a power of two                        */
    int32_t *buffer;            /* (text bytes + 3) tokens while encoding */
};

/* Reads the tokenizer file at data. Returns 0, or -1 if the file is too
 * short or a length is negative, or the heap cannot hold the index. */
int tokenizer_init(struct tinyllama_tokenizer *t, const void *data, uint64_t size, int32_t vocab_size);

/* Encodes text (BOS first when bos); returns the token count, or -1 if the
 * heap cannot hold the working buffer. tokens must hold strlen(text) + 3. */
int tokenizer_encode(struct tinyllama_tokenizer *t, const char *text, int bos, int32_t *tokens);

/* The bytes of token after previous (BOS strips a leading space; "<0xXX>" is a
 * raw byte) into out; returns their count. */
int tokenizer_decode(const struct tinyllama_tokenizer *t, int32_t previous, int32_t token, char *out, int out_size);

#endif
