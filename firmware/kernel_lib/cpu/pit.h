/* The 8254 PIT: channel 0 as the system tick (IRQ 0), channel 2 for calibration. */
#ifndef KERNEL_LIB_CPU_PIT_H
#define KERNEL_LIB_CPU_PIT_H
#include <stdint.h>

#define PIT_INPUT_HZ 1193182u

/* Programs channel 0 in mode 2 at hz ticks per second, installs the IRQ 0
 * handler and unmasks it. Returns 0, or -1 if hz is 0 or out of the range
 * the 16-bit divisor can express (19..1193182). */
int pit_init(uint32_t hz);

/* Ticks since pit_init (incremented by the IRQ 0 handler). */
uint64_t pit_ticks(void);

/* Busy-waits for count input clocks on channel 2 (gate via port 0x61) with
 * interrupts as they are. count must be 1..65535. Returns 0, or -1 if out of range. */
int pit_wait_channel2(uint16_t count);

#endif
