/* TSC calibration against the PIT: the loop most kernels use. */
#include "kernel_lib/cpu/tsc.h"
#include "kernel_lib/cpu/pit.h"

#define CALIBRATION_DIVISOR   100u                          /* 1/100 s = 10 ms */
#define CALIBRATION_PIT_COUNT (PIT_INPUT_HZ / CALIBRATION_DIVISOR)

static uint64_t calibrated_hz;

static uint64_t read_rflags(void)
{
    uint64_t flags;
    __asm__ volatile("pushfq; pop %0" : "=r"(flags));
    return flags;
}

uint64_t tsc_calibrate(void)
{
    uint64_t flags = read_rflags();
    uint64_t start, end;

    __asm__ volatile("cli");
    start = rdtsc();
    pit_wait_channel2((uint16_t)CALIBRATION_PIT_COUNT);
    end = rdtsc();
    if (flags & (1 << 9))
        __asm__ volatile("sti");
    if (end <= start)
        return 0;
    /* Scale by the exact PIT interval (CALIBRATION_PIT_COUNT / PIT_INPUT_HZ s). */
    calibrated_hz = (end - start) * PIT_INPUT_HZ / CALIBRATION_PIT_COUNT;
    return calibrated_hz;
}

uint64_t tsc_hz(void)
{
    return calibrated_hz;
}
