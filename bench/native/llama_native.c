/* The guest's TinyLlama inference code compiled for the host (gcc -O2), to
 * measure what emulation costs: same sources, same kernels, same order.
 *
 *   cc -O2 ... llama_native.c <firmware sources>   (bench/llama_speed.py builds it)
 *   ./llama_native CHECKPOINT TOKENS
 * prints "tokens N seconds S" for TOKENS greedy forward passes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tinyllama/model.h"
#include "tinyllama/sampler.h"

/* What the firmware's heap and console would provide. */
char __kernel_end[1];
extern uint64_t heap_start, heap_end, heap_next;
void console_putc(char c) { putchar(c); }
void console_write(const char *s) { fputs(s, stdout); }

int main(int argc, char **argv)
{
    static char heap[64 << 20] __attribute__((aligned(16)));
    struct tinyllama_failure failure;
    struct tinyllama_model *model;
    struct timespec start, end;
    FILE *file;
    long size;
    char *checkpoint;
    int tokens, token = 1;

    if (argc != 3)
        return 2;
    tokens = atoi(argv[2]);
    heap_start = heap_next = (uint64_t)(uintptr_t)heap;
    heap_end = heap_start + sizeof(heap);
    file = fopen(argv[1], "rb");
    if (!file)
        return 1;
    fseek(file, 0, SEEK_END);
    size = ftell(file);
    rewind(file);
    checkpoint = aligned_alloc(64, (size_t)(size + 63) / 64 * 64);
    if (fread(checkpoint, 1, (size_t)size, file) != (size_t)size)
        return 1;
    model = tinyllama_create(checkpoint, (uint64_t)size, 0, &failure);
    if (!model)
        return 1;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int pos = 0; pos < tokens; pos++)
        token = sampler_argmax(tinyllama_forward(model, token, pos), model->config.vocab_size);
    clock_gettime(CLOCK_MONOTONIC, &end);
    printf("tokens %d seconds %.6f last %d\n", tokens,
           (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9, token);
    return 0;
}
