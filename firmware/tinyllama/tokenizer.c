/* BPE tokenizer (llama2.c run.c: build_tokenizer, encode, decode). */
#include "tinyllama/tokenizer.h"
#include "kernel_lib/libc/string.h"
#include "kernel_lib/memory/malloc_bump.h"

#define FNV_OFFSET     2166136261u
#define FNV_PRIME      16777619u
#define BYTE_FALLBACK  3
#define MAX_CODEPOINT  4
#define NO_TOKEN       (-1)

static uint32_t hash_bytes(const char *bytes, int length)
{
    uint32_t hash = FNV_OFFSET;

    for (int i = 0; i < length; i++)
        hash = (hash ^ (uint8_t)bytes[i]) * FNV_PRIME;
    return hash;
}

/* The id of the piece equal to bytes[0..length), or NO_TOKEN (first id wins on duplicates). */
static int32_t lookup(const struct tinyllama_tokenizer *t, const char *bytes, int length)
{
    uint32_t mask = t->table_size - 1;

    for (uint32_t slot = hash_bytes(bytes, length) & mask;; slot = (slot + 1) & mask) {
        int32_t id = t->table[slot];
        if (id == NO_TOKEN)
            return NO_TOKEN;
        if (t->lengths[id] == length && memcmp(t->pieces[id], bytes, (size_t)length) == 0)
            return id;
    }
}

static void insert(struct tinyllama_tokenizer *t, int32_t id)
{
    uint32_t mask = t->table_size - 1;

    if (lookup(t, t->pieces[id], t->lengths[id]) != NO_TOKEN)
        return;
    for (uint32_t slot = hash_bytes(t->pieces[id], t->lengths[id]) & mask;; slot = (slot + 1) & mask) {
        if (t->table[slot] == NO_TOKEN) {
            t->table[slot] = id;
            return;
        }
    }
}

int tokenizer_init(struct tinyllama_tokenizer *t, const void *data, uint64_t size, int32_t vocab_size)
{
    const uint8_t *p = data, *end = p + size;

    if (size < sizeof(int32_t) || vocab_size <= 0)
        return -1;
    t->vocab_size = vocab_size;
    memcpy(&t->max_token_length, p, sizeof(int32_t));
    p += sizeof(int32_t);
    t->pieces = calloc((size_t)vocab_size, sizeof(*t->pieces));
    t->lengths = calloc((size_t)vocab_size, sizeof(*t->lengths));
    t->scores = calloc((size_t)vocab_size, sizeof(*t->scores));
    for (t->table_size = 1; t->table_size < 2u * (uint32_t)vocab_size; t->table_size *= 2)
        ;
    t->table = malloc(t->table_size * sizeof(*t->table));
    if (!t->pieces || !t->lengths || !t->scores || !t->table)
        return -1;
    memset(t->table, 0xFF, t->table_size * sizeof(*t->table));      /* NO_TOKEN everywhere */
    for (int32_t i = 0; i < vocab_size; i++) {
        if (p + 2 * sizeof(int32_t) > end)
            return -1;
        memcpy(&t->scores[i], p, sizeof(float));
        memcpy(&t->lengths[i], p + sizeof(float), sizeof(int32_t));
        p += 2 * sizeof(int32_t);
        if (t->lengths[i] < 0 || p + t->lengths[i] > end)
            return -1;
        t->pieces[i] = (const char *)p;
        p += t->lengths[i];
    }
    for (int32_t i = 0; i < vocab_size; i++)
        insert(t, i);
    return 0;
}

static int utf8_length(uint8_t lead)
{
    if (lead < 0x80)
        return 1;
    if ((lead & 0xE0) == 0xC0)
        return 2;
    if ((lead & 0xF0) == 0xE0)
        return 3;
    if ((lead & 0xF8) == 0xF0)
        return MAX_CODEPOINT;
    return 1;
}

/* Merges the best-scoring adjacent pair, repeatedly (llama2.c's loop). */
static int merge_pairs(struct tinyllama_tokenizer *t, int32_t *tokens, int count, int first)
{
    char pair[2 * 256];

    for (;;) {
        float best_score = -1e10f;
        int best_index = -1;
        int32_t best_id = NO_TOKEN;

        for (int i = first; i < count - 1; i++) {
            int a = t->lengths[tokens[i]], b = t->lengths[tokens[i + 1]];
            int32_t id;
            if (a + b > (int)sizeof(pair))
                continue;
            memcpy(pair, t->pieces[tokens[i]], (size_t)a);
            memcpy(pair + a, t->pieces[tokens[i + 1]], (size_t)b);
            id = lookup(t, pair, a + b);
            if (id != NO_TOKEN && t->scores[id] > best_score) {
                best_score = t->scores[id];
                best_index = i;
                best_id = id;
            }
        }
        if (best_index < 0)
            return count;
        tokens[best_index] = best_id;
        memmove(&tokens[best_index + 1], &tokens[best_index + 2], (size_t)(count - best_index - 2) * sizeof(*tokens));
        count--;
    }
}

int tokenizer_encode(struct tinyllama_tokenizer *t, const char *text, int bos, int32_t *tokens)
{
    int count = 0;
    int32_t space;

    if (bos)
        tokens[count++] = TOKEN_BOS;
    if (text[0] != 0 && (space = lookup(t, " ", 1)) != NO_TOKEN)
        tokens[count++] = space;                        /* the dummy prefix */
    for (const char *c = text; *c;) {
        int length = utf8_length((uint8_t)*c);
        int32_t id;
        if ((int)strnlen(c, (size_t)length) < length)
            length = (int)strnlen(c, (size_t)length);
        id = lookup(t, c, length);
        if (id != NO_TOKEN) {
            tokens[count++] = id;
        } else {
            for (int i = 0; i < length; i++)
                tokens[count++] = (uint8_t)c[i] + BYTE_FALLBACK;
        }
        c += length;
    }
    return merge_pairs(t, tokens, count, bos ? 1 : 0);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int tokenizer_decode(const struct tinyllama_tokenizer *t, int32_t previous, int32_t token, char *out, int out_size)
{
    const char *piece = t->pieces[token];
    int length = t->lengths[token];

    if (previous == TOKEN_BOS && length > 0 && piece[0] == ' ') {
        piece++;
        length--;
    }
    if (length == 6 && piece[0] == '<' && piece[1] == '0' && piece[2] == 'x' && piece[5] == '>'
        && hex_value(piece[3]) >= 0 && hex_value(piece[4]) >= 0) {
        out[0] = (char)(hex_value(piece[3]) * 16 + hex_value(piece[4]));
        return 1;
    }
    if (length > out_size)
        length = out_size;
    memcpy(out, piece, (size_t)length);
    return length;
}
