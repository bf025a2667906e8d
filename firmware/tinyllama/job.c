/* The TinyLlama job: find the modules, create the model, generate, report speed. */
#include "tinyllama/job.h"
#include "tinyllama/model.h"
#include "tinyllama/sampler.h"
#include "tinyllama/tokenizer.h"
#include "kernel_lib/cpu/debug_exit_codes.h"
#include "kernel_lib/cpu/tsc.h"
#include "kernel_lib/io/kprintf.h"
#include "kernel_lib/io/serial.h"
#include "kernel_lib/libc/string.h"
#include "kernel_lib/memory/malloc_bump.h"
#include "kernel_lib/util/cmdline.h"

#define PROMPT_MAX       1024
#define DEFAULT_STEPS    64
#define DEFAULT_TOPP     0.9f
#define DEFAULT_SEED     1
#define PIECE_MAX        256

struct tinyllama_model *tinyllama_active_model;   /* for the host's guest calls */
struct tinyllama_tokenizer tinyllama_active_tokenizer;

/* Finds both modules and creates the model and tokenizer. Returns 0 or an EXIT_* code. */
static int load(const struct mb2_info *info, const char *cmdline)
{
    const void *checkpoint, *tokenizer;
    uint64_t checkpoint_size, tokenizer_size;
    struct tinyllama_failure failure;

    if (mb2_find_module(info, "model", &checkpoint, &checkpoint_size) != 0) {
        kprintf("llama: no module named \"model\" (give the checkpoint as --module FILE=model)\n");
        return EXIT_NO_MODEL;
    }
    tinyllama_active_model = tinyllama_create(checkpoint, checkpoint_size,
                                              (int32_t)cmdline_uint(cmdline, "seq_len", 0), &failure);
    if (tinyllama_active_model == 0) {
        tinyllama_print_failure(&failure);
        return EXIT_MODEL_CREATION;
    }
    if (mb2_find_module(info, "tokenizer", &tokenizer, &tokenizer_size) == 0
        && tokenizer_init(&tinyllama_active_tokenizer, tokenizer, tokenizer_size,
                          tinyllama_active_model->config.vocab_size) != 0) {
        kprintf("llama: the tokenizer module is malformed or does not fit the heap\n");
        return EXIT_NO_MODEL;
    }
    return 0;
}

/* Prints a piece unless it is a lone unprintable byte (llama2.c's safe_printf). */
static void print_piece(const char *piece, int length)
{
    if (length == 1 && !((piece[0] >= ' ' && piece[0] <= '~') || piece[0] == '\n' || piece[0] == '\t'))
        return;
    serial_write_n(piece, (uint64_t)length);
}

static int generate(const char *cmdline)
{
    struct tinyllama_model *m = tinyllama_active_model;
    struct tinyllama_tokenizer *t = &tinyllama_active_tokenizer;
    struct tinyllama_sampler sampler;
    static char prompt[PROMPT_MAX];
    char piece[PIECE_MAX];
    int32_t *prompt_tokens;
    int count, steps = (int)cmdline_uint(cmdline, "steps", DEFAULT_STEPS), generated = 0;
    int32_t token, next;
    uint64_t start, end;

    if (t->pieces == 0) {
        kprintf("llama: no module named \"tokenizer\"\n");
        return EXIT_NO_MODEL;
    }
    if (cmdline_get(cmdline, "prompt", prompt, sizeof(prompt)) < 0)
        prompt[0] = 0;
    if (steps <= 0 || steps > m->config.seq_len)
        steps = m->config.seq_len;
    prompt_tokens = malloc((strlen(prompt) + 3) * sizeof(int32_t));
    if (prompt_tokens == 0
        || sampler_init(&sampler, m->config.vocab_size, cmdline_float(cmdline, "temp", 0.0f),
                        cmdline_float(cmdline, "topp", DEFAULT_TOPP), cmdline_uint(cmdline, "seed", DEFAULT_SEED)) != 0) {
        kprintf("llama: the heap cannot hold the sampler\n");
        return EXIT_MODEL_CREATION;
    }
    count = tokenizer_encode(t, prompt, 1, prompt_tokens);
    token = prompt_tokens[0];
    start = rdtsc();
    for (int pos = 0; pos < steps; pos++) {
        float *logits = tinyllama_forward(m, token, pos);
        next = pos < count - 1 ? prompt_tokens[pos + 1] : sampler_sample(&sampler, logits);
        if (next == TOKEN_BOS)
            break;
        print_piece(piece, tokenizer_decode(t, token, next, piece, sizeof(piece)));
        token = next;
        generated++;
    }
    end = rdtsc();
    kprintf("\nllama: %d tokens, %lu cycles", generated, (unsigned long)(end - start));
    if (tsc_hz() && end > start) {
        /* tokens per second, in thousandths (double: no 128-bit division without libgcc) */
        uint64_t milli = (uint64_t)((double)generated * 1000.0 * (double)tsc_hz() / (double)(end - start));
        kprintf(", %lu.%03lu tok/s", (unsigned long)(milli / 1000), (unsigned long)(milli % 1000));
    }
    kprintf("\n");
    return EXIT_OK;
}

int tinyllama_job(const struct mb2_info *info, const char *cmdline)
{
    int status = load(info, cmdline);

    if (status != 0)
        return status;
    tsc_calibrate();
    return generate(cmdline);
}

int tinyllama_ready_job(const struct mb2_info *info, const char *cmdline)
{
    return load(info, cmdline);
}
