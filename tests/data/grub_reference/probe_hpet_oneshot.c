/* HPET probe: a one-shot timer with a 32-bit comparator whose match lies beyond the main
 * counter's 2^32 wrap. Timer 0, level-triggered so that each interrupt leaves its bit in
 * the general interrupt status register; the counter starts 1.5 ms below 2^32 and the
 * comparator is 5 ms past the wrap. The probe polls the status bit, clears it, and prints
 * the counter's low word at each interrupt it sees, for 8 ms. Interrupts stay off (cli, the
 * timer's I/O APIC pin masked). Booted by GRUB 2.06 on QEMU 7.2 (RECIPE.md) and by unisim,
 * the number of interrupts and the half of the wrap each falls in must agree. */
#include <stdint.h>

#include "probe_serial.h"

#define HPET_BASE 0xFED00000u
#define HPET_CONFIG 0x010
#define HPET_STATUS 0x020
#define HPET_COUNTER_LOW 0x0F0
#define HPET_COUNTER_HIGH 0x0F4
#define HPET_T0_CONFIG 0x100
#define HPET_T0_COMPARATOR_LOW 0x108
#define HPET_ENABLE 1u
#define TN_LEVEL (1u << 1)
#define TN_INT_ENB (1u << 2)
#define TN_32BIT (1u << 8)
#define MS 100000u                       /* counter ticks in 1 ms at 100 MHz */
#define START (0u - 150000u)             /* 1.5 ms below 2^32 */
#define MATCH 500000u                    /* 5 ms past the wrap */
#define WATCH (8u * MS)                  /* how long to watch */
#define MAX_INTERRUPTS 8
#define WRAP_TICK 0xFFFFFFFFu

void probe_main(uint32_t magic, const uint8_t *info)
{
    (void)magic;
    (void)info;
    __asm__ volatile("cli");
    mmio_write(HPET_BASE + HPET_CONFIG, 0);
    mmio_write(HPET_BASE + HPET_COUNTER_LOW, START);
    mmio_write(HPET_BASE + HPET_COUNTER_HIGH, 0);
    mmio_write(HPET_BASE + HPET_T0_CONFIG, TN_LEVEL | TN_INT_ENB | TN_32BIT);
    mmio_write(HPET_BASE + HPET_T0_COMPARATOR_LOW, MATCH);
    mmio_write(HPET_BASE + HPET_STATUS, 1);
    mmio_write(HPET_BASE + HPET_CONFIG, HPET_ENABLE);
    uint32_t counter = START;
    int seen = 0;
    while (counter - START < WATCH && seen < MAX_INTERRUPTS) {
        uint32_t status = mmio_read(HPET_BASE + HPET_STATUS);      /* first: the counter read */
        counter = mmio_read(HPET_BASE + HPET_COUNTER_LOW);         /* after it is past the event */
        if (status & 1) {
            mmio_write(HPET_BASE + HPET_STATUS, 1);
            puts_("interrupt ");
            /* the wrap's interrupt comes when the low word reaches 0xffffffff (QEMU) */
            puts_(counter >= START && counter < WRAP_TICK ? "before-wrap "
                  : (counter >= WRAP_TICK || counter < MATCH ? "at-wrap-before-match " : "after-match "));
            hex(counter);
            put('\n');
            seen++;
        }
    }
    puts_("end\n");
    outb(DEBUG_EXIT, 0);
    for (;;)
        __asm__ volatile("hlt");
}
