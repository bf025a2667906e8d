#include "kernel_lib/testing/crash_lab.h"

#define RECURSION_FRAME_BYTES 4096
#define SMASH_WORDS           4

__attribute__((noinline)) static uint64_t crash_level3(uint64_t address, uint64_t value)
{
    volatile uint64_t local = value + 3;

    *(volatile uint64_t *)(uintptr_t)address = local;
    return local;
}

__attribute__((noinline)) static uint64_t crash_level2(uint64_t address, uint64_t value)
{
    volatile uint64_t local = value + 2;

    return crash_level3(address, local) + local;
}

__attribute__((noinline)) uint64_t crash_level1(uint64_t address, uint64_t value)
{
    volatile uint64_t local = value + 1;

    return crash_level2(address, local) + local;
}

__attribute__((noinline)) uint64_t crash_recurse(uint64_t depth, uint64_t limit)
{
    volatile uint8_t frame[RECURSION_FRAME_BYTES];

    frame[0] = (uint8_t)depth;
    frame[RECURSION_FRAME_BYTES - 1] = (uint8_t)depth;
    if (depth >= limit)
        return frame[0];
    return crash_recurse(depth + 1, limit) + frame[0] + frame[RECURSION_FRAME_BYTES - 1];
}

static volatile int smash_extra = 4;     /* how far past the buffer the loop runs */

__attribute__((noinline)) void crash_return_into(uint64_t target)
{
    volatile uint64_t words[SMASH_WORDS];
    volatile uint64_t *cursor = words;
    int count = SMASH_WORDS + smash_extra;

    /* The classic overflow: past the buffer lie the saved frame pointer and the
     * return address. */
    for (int i = 0; i < count; i++)
        cursor[i] = target;
}
