/* The time-stamp counter. */
#ifndef KERNEL_LIB_CPU_TSC_H
#define KERNEL_LIB_CPU_TSC_H
#include <stdint.h>

static inline uint64_t rdtsc(void)
{
    uint32_t low, high;
    __asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
    return ((uint64_t)high << 32) | low;
}

/* Measures the TSC rate against PIT channel 2 over 10 ms (interrupts off
 * meanwhile). Returns ticks per second, or 0 if the TSC did not move. */
uint64_t tsc_calibrate(void);

/* The rate found by the last tsc_calibrate(), or 0 before it ran. */
uint64_t tsc_hz(void);

#endif
