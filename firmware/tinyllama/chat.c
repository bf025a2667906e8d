/* The chat job: a GGUF instruct model answering in ChatML (see chat.h). */
#include "tinyllama/chat.h"
#include "tinyllama/bpe.h"
#include "tinyllama/gguf_model.h"
#include "tinyllama/sampler.h"
#include "kernel_lib/cpu/debug_exit_codes.h"
#include "kernel_lib/cpu/tsc.h"
#include "kernel_lib/io/kprintf.h"
#include "kernel_lib/io/serial.h"
#include "kernel_lib/libc/string.h"
#include "kernel_lib/memory/malloc_bump.h"
#include "kernel_lib/util/cmdline.h"

#define DEFAULT_MAX_TOKENS  256
#define DEFAULT_TOPP        0.9f
#define DEFAULT_SEED        1
#define PIECE_MAX           256
#define UTF8_MAX            4
#define OPTION_TEXT_MAX     16
#define MAX_CONTEXT         (1 << 20)   /* positions the prompt buffer is sized for, at most */
#define SAMPLER_BUFFERS     2           /* probabilities and indices, (vocab) each */
#define SPARE_BLOCKS        8           /* heap blocks the job allocates after the model */

struct gguf_llama_model chat_active_model;        /* for the host's guest calls */
struct bpe_tokenizer chat_active_tokenizer;

struct chat_tokens {                /* the ChatML markers of the vocabulary */
    int32_t im_start;
    int32_t im_end;
    int32_t end_of_text;            /* -1 if the vocabulary has none */
};

static int32_t special_id(const struct bpe_tokenizer *t, const char *text)
{
    return bpe_token_id(t, text, strlen(text));
}

/* dot=blocks: ggml's scalar dot-product order (faster here); otherwise its AVX2 order. */
static enum dot_order dot_order_option(const char *cmdline)
{
    char value[OPTION_TEXT_MAX];

    return cmdline_get(cmdline, "dot", value, sizeof(value)) > 0 && strcmp(value, "blocks") == 0 ? DOT_ORDER_BLOCKS
                                                                                                 : DOT_ORDER_AVX2;
}

/* Heap the job needs after the model: the prompt's ids, the sampler, the turn text. */
static uint64_t spare_bytes(struct gguf_file *file, int32_t vocab_size)
{
    uint64_t context = MAX_CONTEXT;

    if (gguf_get_uint(file, "llama.context_length", &context) != 0 || context > MAX_CONTEXT)
        context = MAX_CONTEXT;
    return context * sizeof(int32_t) + SAMPLER_BUFFERS * (uint64_t)vocab_size * sizeof(float) + PIECE_MAX * 4
           + SPARE_BLOCKS * (HEAP_HEADER_SIZE + HEAP_ALIGN);
}

static int load(const struct mb2_info *info, const char *cmdline)
{
    const void *module;
    uint64_t size;
    struct gguf_file file;

    if (mb2_find_module(info, "model", &module, &size) != 0) {
        kprintf("chat: no module named \"model\" (give the GGUF file as --module FILE=model)\n");
        return EXIT_NO_MODEL;
    }
    if (gguf_open(&file, module, size) != 0) {
        kprintf("chat: %s\n", file.error);
        return EXIT_MODEL_CREATION;
    }
    if (bpe_init(&chat_active_tokenizer, &file) != 0) {          /* before the KV cache takes the heap */
        kprintf("chat: %s\n", chat_active_tokenizer.error);
        return EXIT_MODEL_CREATION;
    }
    if (gguf_llama_create(&chat_active_model, &file, (int32_t)cmdline_uint(cmdline, "ctx", 0),
                          spare_bytes(&file, chat_active_tokenizer.vocab_size)) != 0) {
        kprintf("chat: %s\n", chat_active_model.error);
        return EXIT_MODEL_CREATION;
    }
    chat_active_model.dot_order = dot_order_option(cmdline);
    return 0;
}

/* Appends the ids of text[0..size) to ids[count..max). Returns the new count, or -1. */
static int append_text(const char *text, uint64_t size, int32_t *ids, int count, int max)
{
    int added = count < 0 ? -1 : bpe_encode(&chat_active_tokenizer, text, size, ids + count, max - count);

    return added < 0 ? -1 : count + added;
}

static int append_string(const char *text, int32_t *ids, int count, int max)
{
    return append_text(text, strlen(text), ids, count, max);
}

static int append_id(int32_t id, int32_t *ids, int count, int max)
{
    if (count < 0 || count >= max)
        return -1;
    ids[count] = id;
    return count + 1;
}

/* One ChatML turn: <|im_start|>{role}\n{text}<|im_end|>\n, role and text
 * tokenized together as llama.cpp does with the text between special tokens. */
static int chatml_turn(const struct chat_tokens *c, const char *role, const void *text, uint64_t size, int32_t *ids,
                       int count, int max)
{
    char *joined = malloc(strlen(role) + 1 + size);
    int result;

    if (joined == 0)
        return -1;
    memcpy(joined, role, strlen(role));
    joined[strlen(role)] = '\n';
    memcpy(joined + strlen(role) + 1, text, size);
    count = append_id(c->im_start, ids, count, max);
    count = append_text(joined, strlen(role) + 1 + size, ids, count, max);
    count = append_id(c->im_end, ids, count, max);
    result = append_string("\n", ids, count, max);
    free(joined);
    return result;
}

/* ChatML: [system turn] user turn, then <|im_start|>assistant\n.
 * Returns the token count, or -1 if max is too small. */
static int chatml_prompt(const struct mb2_info *info, const struct chat_tokens *c, int32_t *ids, int max)
{
    const void *text = "";
    uint64_t size = 0;
    int count = 0;

    if (mb2_find_module(info, "system", &text, &size) == 0)
        count = chatml_turn(c, "system", text, size, ids, count, max);
    text = "";
    size = 0;
    mb2_find_module(info, "user", &text, &size);
    count = chatml_turn(c, "user", text, size, ids, count, max);
    count = append_id(c->im_start, ids, count, max);
    return append_string("assistant\n", ids, count, max);
}

/* Bytes of the answer so far that end a whole UTF-8 character are written; a
 * character's first bytes wait for the rest (an emoji spans tokens). */
struct utf8_stream {
    uint8_t pending[UTF8_MAX];
    int count;
};

static int sequence_length(uint8_t lead)
{
    return lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : (lead & 0xF8) == 0xF0 ? 4 : 1;
}

static void stream_bytes(struct utf8_stream *s, const uint8_t *bytes, int count)
{
    for (int i = 0; i < count; i++) {
        if (s->count > 0 && (bytes[i] & 0xC0) != 0x80) {        /* a broken sequence: out as it is */
            serial_write_n((const char *)s->pending, (uint64_t)s->count);
            s->count = 0;
        }
        s->pending[s->count++] = bytes[i];
        if (s->count == sequence_length(s->pending[0])) {
            serial_write_n((const char *)s->pending, (uint64_t)s->count);
            s->count = 0;
        }
    }
}

/* Runs the prompt in batches; returns the logits after its last token, or NULL. */
static float *read_prompt(const int32_t *ids, int count)
{
    float *logits = 0;

    for (int done = 0; done < count; done += GGUF_MODEL_MAX_BATCH) {
        int batch = count - done < GGUF_MODEL_MAX_BATCH ? count - done : GGUF_MODEL_MAX_BATCH;
        logits = gguf_llama_forward(&chat_active_model, ids + done, batch, done);
        if (logits == 0)
            return 0;
    }
    return logits;
}

static void print_speed(const char *what, int tokens, uint64_t cycles)
{
    kprintf("%s %d tokens in %lu cycles", what, tokens, (unsigned long)cycles);
    if (tsc_hz() && cycles) {
        uint64_t milli = (uint64_t)((double)tokens * 1000.0 * (double)tsc_hz() / (double)cycles);
        kprintf(" (%lu.%03lu tok/s)", (unsigned long)(milli / 1000), (unsigned long)(milli % 1000));
    }
}

/* Samples, streams and feeds back one token after another from position pos,
 * until the end of the turn, max_tokens or the end of the context. Returns why it
 * stopped; *generated counts the tokens streamed. */
static const char *stream_answer(struct tinyllama_sampler *sampler, const struct chat_tokens *markers, float *logits,
                                 int32_t pos, int max_tokens, int *generated)
{
    struct gguf_llama_model *m = &chat_active_model;
    const struct bpe_tokenizer *t = &chat_active_tokenizer;
    struct utf8_stream stream = {{0}, 0};
    const char *stop = "max_tokens";

    for (*generated = 0; *generated < max_tokens; pos++) {
        uint8_t piece[PIECE_MAX];
        int32_t token = sampler_sample(sampler, logits);
        int bytes;

        if (token == t->eos || token == markers->im_end || token == markers->end_of_text) {
            stop = "end of turn";
            break;
        }
        bytes = bpe_decode(t, token, piece, sizeof(piece));
        stream_bytes(&stream, piece, bytes > 0 ? bytes : 0);
        if (++*generated >= max_tokens)
            break;
        logits = gguf_llama_forward_one(m, token, pos);
        if (logits == 0) {                       /* pos is past the context */
            stop = "context full";
            break;
        }
    }
    if (stream.count)                            /* a character the answer never finished */
        serial_write_n((const char *)stream.pending, (uint64_t)stream.count);
    return stop;
}

static int answer(const struct mb2_info *info, const char *cmdline)
{
    struct gguf_llama_model *m = &chat_active_model;
    const struct bpe_tokenizer *t = &chat_active_tokenizer;
    struct chat_tokens markers = {special_id(t, "<|im_start|>"), special_id(t, "<|im_end|>"),
                                  special_id(t, "<|endoftext|>")};
    int max_tokens = (int)cmdline_uint(cmdline, "max_tokens", DEFAULT_MAX_TOKENS), generated, count;
    int32_t *ids = malloc((uint64_t)m->config.seq_len * sizeof(int32_t));      /* (seq_len) prompt ids */
    struct tinyllama_sampler sampler;
    uint64_t start, prompt_end;
    const char *stop;
    float *logits;

    if (markers.im_start < 0 || markers.im_end < 0) {
        kprintf("chat: the vocabulary has no <|im_start|> or <|im_end|> token (not a ChatML model)\n");
        return EXIT_MODEL_CREATION;
    }
    if (ids == 0 || sampler_init(&sampler, m->config.vocab_size, cmdline_float(cmdline, "temp", 0.0f),
                                 cmdline_float(cmdline, "topp", DEFAULT_TOPP),
                                 cmdline_uint(cmdline, "seed", DEFAULT_SEED)) != 0) {
        kprintf("chat: the heap cannot hold the prompt and the sampler\n");
        return EXIT_MODEL_CREATION;
    }
    count = chatml_prompt(info, &markers, ids, m->config.seq_len);
    if (count < 0) {
        kprintf("chat: the prompt does not fit the context of %d tokens (give a larger ctx= or a shorter prompt)\n",
                m->config.seq_len);
        return EXIT_MODEL_CREATION;
    }
    kprintf("chat: prompt %d tokens\n", count);
    start = rdtsc();
    logits = read_prompt(ids, count);
    prompt_end = rdtsc();
    stop = stream_answer(&sampler, &markers, logits, count, max_tokens, &generated);
    kprintf("\n");
    print_speed("chat: prompt", count, prompt_end - start);
    print_speed(", answer", generated, rdtsc() - prompt_end);
    kprintf(", stop: %s\n", stop);
    return EXIT_OK;
}

int chat_job(const struct mb2_info *info, const char *cmdline)
{
    int status = load(info, cmdline);

    if (status != 0)
        return status;
    tsc_calibrate();
    return answer(info, cmdline);
}

int chat_ready_job(const struct mb2_info *info, const char *cmdline)
{
    return load(info, cmdline);
}
