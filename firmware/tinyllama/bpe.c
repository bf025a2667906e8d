/* GPT-2 byte-level BPE (see bpe.h): tables, pre-tokenizer, merges, decoding. */
#include "tinyllama/bpe.h"
#include "tinyllama/unicode_classes.h"
#include "kernel_lib/io/kprintf.h"
#include "kernel_lib/libc/string.h"
#include "kernel_lib/memory/malloc_bump.h"

#define FNV_OFFSET          2166136261u
#define FNV_PRIME           16777619u
#define GOLDEN_RATIO_32     0x9E3779B1u     /* Fibonacci hashing's multiplier, 2^32 / phi */
#define MERGE_TEXT_MAX      256         /* bytes of a merged token's text */
#define GPT2_SHIFTED_BASE   256         /* non-printable bytes map to U+0100 + their index */
#define UTF8_MAX            4

enum char_class { CLASS_OTHER, CLASS_LETTER, CLASS_NUMBER, CLASS_SPACE };

static int bpe_failed(struct bpe_tokenizer *t, const char *line)
{
    strncpy(t->error, line, sizeof(t->error) - 1);
    t->error[sizeof(t->error) - 1] = 0;
    return -1;
}

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves. */
static int byte_is_printable(int b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static uint32_t byte_code_point(int b)
{
    int shifted = 0;

    if (byte_is_printable(b))
        return (uint32_t)b;
    for (int before = 0; before < b; before++)
        shifted += !byte_is_printable(before);
    return GPT2_SHIFTED_BASE + (uint32_t)shifted;
}

/* The byte code point c stands for, or -1. */
static int code_point_byte(uint32_t c)
{
    if (c < GPT2_SHIFTED_BASE)
        return byte_is_printable((int)c) ? (int)c : -1;
    for (int b = 0, shifted = 0; b < 256; b++)
        if (!byte_is_printable(b) && (uint32_t)(GPT2_SHIFTED_BASE + shifted++) == c)
            return b;
    return -1;
}

static int utf8_encode(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    out[0] = (char)(0xE0 | (c >> 12));
    out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[2] = (char)(0x80 | (c & 0x3F));
    return 3;
}

/* The code point at s (before end) and its byte count; a malformed byte is U+FFFD, 1 byte. */
static int utf8_decode(const uint8_t *s, const uint8_t *end, uint32_t *c)
{
    int count = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;

    if (count == 0 || end - s < count) {
        *c = 0xFFFD;
        return 1;
    }
    *c = count == 1 ? s[0] : (uint32_t)(s[0] & (0x7F >> count));
    for (int i = 1; i < count; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *c = 0xFFFD;
            return 1;
        }
        *c = (*c << 6) | (s[i] & 0x3F);
    }
    return count;
}

static uint32_t fnv1a(const char *text, size_t length, uint32_t hash)
{
    for (size_t i = 0; i < length; i++)
        hash = (hash ^ (uint8_t)text[i]) * FNV_PRIME;
    return hash;
}

static uint32_t table_mask(uint64_t entries)
{
    uint32_t size = 1;

    while (size < 2 * entries)
        size <<= 1;
    return size - 1;
}

int32_t bpe_token_id(const struct bpe_tokenizer *t, const char *text, size_t length)
{
    for (uint32_t slot = fnv1a(text, length, FNV_OFFSET) & t->token_mask;; slot = (slot + 1) & t->token_mask) {
        int32_t id = t->token_slots[slot];
        if (id < 0)
            return -1;
        if (t->length[id] == length && memcmp(t->text[id], text, length) == 0)
            return id;
    }
}

static struct bpe_merge *merge_slot(const struct bpe_tokenizer *t, int32_t left, int32_t right)
{
    uint32_t slot = ((uint32_t)left * FNV_PRIME ^ (uint32_t)right * GOLDEN_RATIO_32) & t->merge_mask;

    for (;; slot = (slot + 1) & t->merge_mask) {
        struct bpe_merge *m = &t->merge_slots[slot];
        if (m->left < 0 || (m->left == left && m->right == right))
            return m;
    }
}

static int read_tokens(struct bpe_tokenizer *t, struct gguf_file *file)
{
    struct gguf_array tokens, types;
    const uint8_t *cursor;

    if (gguf_get_array(file, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tokens) != 0)
        return bpe_failed(t, file->error);
    if (tokens.count == 0 || tokens.count > INT32_MAX / 2)
        return bpe_failed(t, "gguf: tokenizer.ggml.tokens is empty or too long");
    t->vocab_size = (int32_t)tokens.count;
    t->text = calloc(tokens.count, sizeof(*t->text));
    t->length = calloc(tokens.count, sizeof(*t->length));
    t->kind = calloc(tokens.count, sizeof(*t->kind));
    t->token_mask = table_mask(tokens.count);
    t->token_slots = malloc(((uint64_t)t->token_mask + 1) * sizeof(*t->token_slots));
    if (!t->text || !t->length || !t->kind || !t->token_slots)
        return bpe_failed(t, "tokenizer: the heap cannot hold the vocabulary tables");
    memset(t->token_slots, 0xFF, ((uint64_t)t->token_mask + 1) * sizeof(*t->token_slots));
    cursor = tokens.first;
    for (int32_t id = 0; id < t->vocab_size; id++) {
        struct gguf_string text;
        uint32_t slot;
        cursor = gguf_next_string(cursor, &text);
        t->text[id] = text.bytes;
        t->length[id] = (uint32_t)text.length;
        t->kind[id] = BPE_TOKEN_NORMAL;
        slot = fnv1a(text.bytes, text.length, FNV_OFFSET) & t->token_mask;
        while (t->token_slots[slot] >= 0)
            slot = (slot + 1) & t->token_mask;
        if (bpe_token_id(t, text.bytes, text.length) < 0)         /* the first of duplicates wins */
            t->token_slots[slot] = id;
    }
    if (gguf_has_key(file, "tokenizer.ggml.token_type")) {
        if (gguf_get_array(file, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types) != 0)
            return bpe_failed(t, file->error);
        for (uint64_t id = 0; id < types.count && id < tokens.count; id++) {
            int32_t kind;
            memcpy(&kind, types.first + 4 * id, sizeof(kind));
            t->kind[id] = (uint8_t)kind;
        }
    }
    return 0;
}

static int read_merges(struct bpe_tokenizer *t, struct gguf_file *file)
{
    struct gguf_array merges;
    const uint8_t *cursor;
    char joined[MERGE_TEXT_MAX];

    if (gguf_get_array(file, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges) != 0)
        return bpe_failed(t, file->error);
    t->merge_mask = table_mask(merges.count);
    t->merge_slots = malloc(((uint64_t)t->merge_mask + 1) * sizeof(*t->merge_slots));
    if (!t->merge_slots)
        return bpe_failed(t, "tokenizer: the heap cannot hold the merge table");
    memset(t->merge_slots, 0xFF, ((uint64_t)t->merge_mask + 1) * sizeof(*t->merge_slots));
    cursor = merges.first;
    for (uint64_t rank = 0; rank < merges.count; rank++) {
        struct gguf_string merge;
        const char *space;
        int32_t left, right, merged;
        struct bpe_merge *slot;

        cursor = gguf_next_string(cursor, &merge);
        space = merge.length > 2 ? memchr(merge.bytes + 1, ' ', merge.length - 2) : 0;
        if (space == 0 || merge.length - 1 > MERGE_TEXT_MAX)
            continue;                                   /* not "left right": no merge */
        left = bpe_token_id(t, merge.bytes, (size_t)(space - merge.bytes));
        right = bpe_token_id(t, space + 1, merge.length - (size_t)(space + 1 - merge.bytes));
        memcpy(joined, merge.bytes, (size_t)(space - merge.bytes));
        memcpy(joined + (space - merge.bytes), space + 1, merge.length - (size_t)(space + 1 - merge.bytes));
        merged = bpe_token_id(t, joined, merge.length - 1);
        if (left < 0 || right < 0 || merged < 0)
            continue;
        slot = merge_slot(t, left, right);
        if (slot->left < 0)                                 /* the first (lowest) rank wins */
            *slot = (struct bpe_merge){left, right, (int32_t)rank, merged};
    }
    return 0;
}

static int read_special_ids(struct bpe_tokenizer *t, struct gguf_file *file)
{
    uint64_t bos, eos;

    if (gguf_get_uint(file, "tokenizer.ggml.bos_token_id", &bos) != 0
        || gguf_get_uint(file, "tokenizer.ggml.eos_token_id", &eos) != 0)
        return bpe_failed(t, file->error);
    if (bos >= (uint64_t)t->vocab_size || eos >= (uint64_t)t->vocab_size)
        return bpe_failed(t, "gguf: tokenizer.ggml.bos_token_id or eos_token_id is outside the vocabulary");
    t->bos = (int32_t)bos;
    t->eos = (int32_t)eos;
    return 0;
}

int bpe_init(struct bpe_tokenizer *t, struct gguf_file *file)
{
    struct gguf_string model;

    memset(t, 0, sizeof(*t));
    if (gguf_get_string(file, "tokenizer.ggml.model", &model) != 0)
        return bpe_failed(t, file->error);
    if (!gguf_string_equals(model, "gpt2"))
        return bpe_failed(t, "gguf: tokenizer.ggml.model is not 'gpt2' (the byte-level BPE this firmware runs)");
    if (read_tokens(t, file) != 0 || read_merges(t, file) != 0 || read_special_ids(t, file) != 0)
        return -1;
    for (int b = 0; b < 256; b++) {     /* -1 for the few bytes a vocabulary lacks (SmolLM2: 21) */
        char text[UTF8_MAX];
        t->byte_token[b] = bpe_token_id(t, text, (size_t)utf8_encode(byte_code_point(b), text));
    }
    return 0;
}

/* ---- pre-tokenizer ------------------------------------------------------------------ */

static int in_ranges(uint32_t c, const struct code_point_range *ranges, int count)
{
    int low = 0, high = count - 1;

    while (low <= high) {
        int middle = (low + high) / 2;
        if (c < ranges[middle].first)
            high = middle - 1;
        else if (c > ranges[middle].last)
            low = middle + 1;
        else
            return 1;
    }
    return 0;
}

static enum char_class classify(uint32_t c)
{
    if (in_ranges(c, unicode_letter_ranges, unicode_letter_range_count))
        return CLASS_LETTER;
    if (in_ranges(c, unicode_number_ranges, unicode_number_range_count))
        return CLASS_NUMBER;
    if (in_ranges(c, unicode_space_ranges, unicode_space_range_count))
        return CLASS_SPACE;
    return CLASS_OTHER;
}

struct text_span {
    const uint8_t *at;
    const uint8_t *end;
};

static enum char_class class_at(struct text_span s, const uint8_t *at, int *bytes)
{
    uint32_t c;

    *bytes = utf8_decode(at, s.end, &c);
    return classify(c);
}

/* Bytes of a run of class starting at at. */
static const uint8_t *run_end(struct text_span s, const uint8_t *at, enum char_class kind)
{
    int bytes;

    while (at < s.end && class_at(s, at, &bytes) == kind)
        at += bytes;
    return at;
}

/* The contraction at at ('s 't 'm 'd: 2 bytes; 're 've 'll: 3), or 0. */
static int contraction(struct text_span s, const uint8_t *at)
{
    long left = s.end - at;

    if (left < 2 || at[0] != '\'')
        return 0;
    if (at[1] == 's' || at[1] == 't' || at[1] == 'm' || at[1] == 'd')
        return 2;
    if (left >= 3 && ((at[1] == 'r' && at[2] == 'e') || (at[1] == 'v' && at[2] == 'e') || (at[1] == 'l' && at[2] == 'l')))
        return 3;
    return 0;
}

/* The end of the pre-tokenizer piece that starts at s.at (GPT-2's pattern). */
static const uint8_t *piece_end(struct text_span s)
{
    int first_bytes, next_bytes = 0;
    enum char_class first = class_at(s, s.at, &first_bytes), next = CLASS_SPACE;
    const uint8_t *after_space = s.at + first_bytes, *run;

    if (contraction(s, s.at))
        return s.at + contraction(s, s.at);
    if (after_space < s.end)
        next = class_at(s, after_space, &next_bytes);
    if (first != CLASS_SPACE)                                   /* \p{L}+, \p{N}+ or other+ */
        return run_end(s, s.at, first);
    if (s.at[0] == ' ' && after_space < s.end && next != CLASS_SPACE)   /* ' ' then a run */
        return run_end(s, after_space, next);
    run = run_end(s, s.at, CLASS_SPACE);
    if (run == s.end)
        return run;                                             /* \s+ at the end */
    {                                                           /* \s+(?!\S): all but the last */
        const uint8_t *last = s.at, *scan = s.at;
        int bytes;
        while (scan < run) {
            last = scan;
            class_at(s, scan, &bytes);
            scan += bytes;
        }
        return last > s.at ? last : run;                        /* one whitespace: \s+ */
    }
}

/* BPE of one piece: its bytes' tokens merged by rank. A byte the vocabulary
 * lacks never merges and is left out, as llama.cpp leaves out a symbol it cannot
 * spell with tokens. Returns the count, or -1. */
static int encode_piece(const struct bpe_tokenizer *t, struct text_span piece, int32_t *symbols,
                        int32_t *out, int max)
{
    int count = 0;

    for (const uint8_t *b = piece.at; b < piece.end; b++)
        symbols[count++] = t->byte_token[*b];
    for (;;) {
        int best = -1;
        int32_t best_rank = INT32_MAX, merged = -1;
        for (int i = 0; i + 1 < count; i++) {
            struct bpe_merge *m = symbols[i] < 0 || symbols[i + 1] < 0 ? 0 : merge_slot(t, symbols[i], symbols[i + 1]);
            if (m && m->left >= 0 && m->rank < best_rank) {
                best_rank = m->rank;
                best = i;
                merged = m->merged;
            }
        }
        if (best < 0)
            break;
        symbols[best] = merged;
        memmove(symbols + best + 1, symbols + best + 2, (size_t)(count - best - 2) * sizeof(*symbols));
        count--;
    }
    int kept = 0;
    for (int i = 0; i < count; i++) {
        if (symbols[i] < 0)
            continue;
        if (kept >= max)
            return -1;
        out[kept++] = symbols[i];
    }
    return kept;
}

/* GPT-2's pattern over a span with no digit in it. Returns the count, or -1. */
static int encode_part(const struct bpe_tokenizer *t, struct text_span part, int32_t *scratch, int32_t *out, int max)
{
    int total = 0;

    while (part.at < part.end) {
        struct text_span piece = {part.at, piece_end(part)};
        int count = encode_piece(t, piece, scratch, out + total, max - total);
        if (count < 0)
            return -1;
        total += count;
        part.at = piece.end;
    }
    return total;
}

int bpe_encode(const struct bpe_tokenizer *t, const char *text, size_t length, int32_t *out, int max)
{
    struct text_span all = {(const uint8_t *)text, (const uint8_t *)text + length};
    int32_t *scratch = malloc((length + 1) * sizeof(int32_t));
    const uint8_t *part = all.at;
    int total = 0;

    if (scratch == 0)
        return -1;
    while (part < all.end && total >= 0) {              /* the smollm rule: each digit alone */
        const uint8_t *at = part;
        int bytes = 0, count;
        while (at < all.end && class_at(all, at, &bytes) != CLASS_NUMBER)
            at += bytes;
        count = encode_part(t, (struct text_span){part, at}, scratch, out + total, max - total);
        total = count < 0 ? -1 : total + count;
        if (at < all.end && total >= 0) {
            count = encode_part(t, (struct text_span){at, at + bytes}, scratch, out + total, max - total);
            total = count < 0 ? -1 : total + count;
            at += bytes;
        }
        part = at;
    }
    free(scratch);
    return total;
}

int bpe_decode(const struct bpe_tokenizer *t, int32_t token, uint8_t *out, int max)
{
    const uint8_t *text, *end;
    int count = 0;

    if (token < 0 || token >= t->vocab_size)
        return -1;
    if (t->kind[token] == BPE_TOKEN_CONTROL)
        return 0;
    text = (const uint8_t *)t->text[token];
    end = text + t->length[token];
    if (t->kind[token] == BPE_TOKEN_USER_DEFINED) {
        if ((int)t->length[token] > max)
            return -1;
        memcpy(out, text, t->length[token]);
        return (int)t->length[token];
    }
    while (text < end) {
        uint32_t c;
        int byte;
        text += utf8_decode(text, end, &c);
        byte = code_point_byte(c);
        if (count >= max)
            return -1;
        if (byte >= 0)
            out[count++] = (uint8_t)byte;
    }
    return count;
}
