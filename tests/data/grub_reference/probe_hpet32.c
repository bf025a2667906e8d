/* HPET probe: timer 0 periodic with a 32-bit comparator across the main counter's 2^32
 * boundary. The counter is set (halted) to 2.5 periods below 2^32; the comparator to one
 * period on, the period to 10 ms (1,000,000 ticks, which does not divide 2^32); then the
 * counter runs and the probe polls the comparator, printing each value it moves to with
 * the counter's low word when the move was seen. Interrupts stay off (cli, and the timer's
 * I/O APIC pin masked): only the comparator's arithmetic is looked at. Booted by GRUB 2.06
 * on QEMU 7.2 (RECIPE.md) and by unisim, the comparator values must agree. */
#include <stdint.h>

#include "probe_serial.h"

#define HPET_BASE 0xFED00000u
#define HPET_CONFIG 0x010
#define HPET_COUNTER_LOW 0x0F0
#define HPET_COUNTER_HIGH 0x0F4
#define HPET_T0_CONFIG 0x100
#define HPET_T0_COMPARATOR 0x108
#define HPET_ENABLE 1u
#define TN_INT_ENB (1u << 2)            /* the timer runs (its interrupt is masked elsewhere) */
#define TN_PERIODIC (1u << 3)
#define TN_VAL_SET (1u << 6)
#define TN_32BIT (1u << 8)
#define PERIOD 1000000u                  /* 10 ms at 100 MHz */
#define START (0u - 5u * (PERIOD / 2u))  /* 2.5 periods below 2^32 */
#define MOVES 8                          /* comparator values to print */

void probe_main(uint32_t magic, const uint8_t *info)
{
    (void)magic;
    (void)info;
    __asm__ volatile("cli");
    mmio_write(HPET_BASE + HPET_CONFIG, 0);                        /* halt the counter */
    mmio_write(HPET_BASE + HPET_COUNTER_LOW, START);
    mmio_write(HPET_BASE + HPET_COUNTER_HIGH, 0);
    mmio_write(HPET_BASE + HPET_T0_CONFIG, TN_INT_ENB | TN_PERIODIC | TN_VAL_SET | TN_32BIT);
    mmio_write(HPET_BASE + HPET_T0_COMPARATOR, START + PERIOD);    /* comparator (VAL_SET) */
    mmio_write(HPET_BASE + HPET_T0_COMPARATOR, PERIOD);            /* then the period */
    puts_("start ");
    hex(START);
    puts_(" comparator ");
    hex(mmio_read(HPET_BASE + HPET_T0_COMPARATOR));
    put('\n');
    mmio_write(HPET_BASE + HPET_CONFIG, HPET_ENABLE);
    uint32_t last = mmio_read(HPET_BASE + HPET_T0_COMPARATOR);
    for (int moves = 0; moves < MOVES;) {
        uint32_t now = mmio_read(HPET_BASE + HPET_T0_COMPARATOR);
        if (now == last)
            continue;
        uint32_t counter = mmio_read(HPET_BASE + HPET_COUNTER_LOW);
        puts_("comparator ");
        hex(now);
        puts_(" counter ");
        hex(counter);
        put('\n');
        last = now;
        moves++;
    }
    puts_("end\n");
    outb(DEBUG_EXIT, 0);
    for (;;)
        __asm__ volatile("hlt");
}
