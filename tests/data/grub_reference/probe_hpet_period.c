/* HPET probe: what a write to the high half of a periodic timer's comparator does with
 * and without VAL_SET (64-bit comparator). The counter is halted at 2^32; timer 0 gets
 * (1) VAL_SET, comparator low = PERIOD, (2) VAL_SET again, comparator high = 1, so the
 * comparator is 2^32 + PERIOD; the counter runs and the probe prints the comparator (both
 * words) after each of the first MOVES matches: its step is the period the writes left.
 * Then the same with a high-half write of 0 without VAL_SET after them (a write to the
 * period's high half, or to the comparator's). Interrupts stay off. Booted by GRUB 2.06 on
 * QEMU 7.2 (RECIPE.md) and by unisim, the comparator values must agree. */
#include <stdint.h>

#include "probe_serial.h"

#define HPET_BASE 0xFED00000u
#define HPET_CONFIG 0x010
#define HPET_COUNTER_LOW 0x0F0
#define HPET_COUNTER_HIGH 0x0F4
#define HPET_T0_CONFIG 0x100
#define HPET_T0_COMPARATOR_LOW 0x108
#define HPET_T0_COMPARATOR_HIGH 0x10C
#define HPET_ENABLE 1u
#define TN_INT_ENB (1u << 2)
#define TN_PERIODIC (1u << 3)
#define TN_VAL_SET (1u << 6)
#define PERIOD 1000000u                  /* 10 ms at 100 MHz */
#define MOVES 3

static void print_comparator(const char *label)
{
    puts_(label);
    hex(mmio_read(HPET_BASE + HPET_T0_COMPARATOR_HIGH));
    hex(mmio_read(HPET_BASE + HPET_T0_COMPARATOR_LOW));
    put('\n');
}

/* Program timer 0 from a halted counter at 2^32; extra: a last high-half write without
 * VAL_SET (its value), or none (-1). Then run and print MOVES comparator values. */
static void run(const char *name, int64_t extra)
{
    uint32_t periodic = TN_INT_ENB | TN_PERIODIC;
    mmio_write(HPET_BASE + HPET_CONFIG, 0);
    mmio_write(HPET_BASE + HPET_T0_CONFIG, periodic);
    mmio_write(HPET_BASE + HPET_COUNTER_LOW, 0);
    mmio_write(HPET_BASE + HPET_COUNTER_HIGH, 1);
    mmio_write(HPET_BASE + HPET_T0_CONFIG, periodic | TN_VAL_SET);
    mmio_write(HPET_BASE + HPET_T0_COMPARATOR_LOW, PERIOD);
    mmio_write(HPET_BASE + HPET_T0_CONFIG, periodic | TN_VAL_SET);
    mmio_write(HPET_BASE + HPET_T0_COMPARATOR_HIGH, 1);
    if (extra >= 0)
        mmio_write(HPET_BASE + HPET_T0_COMPARATOR_HIGH, (uint32_t)extra);
    puts_(name);
    put('\n');
    print_comparator("programmed ");
    mmio_write(HPET_BASE + HPET_CONFIG, HPET_ENABLE);
    uint32_t last = mmio_read(HPET_BASE + HPET_T0_COMPARATOR_LOW);
    for (int moves = 0; moves < MOVES;) {
        uint32_t now = mmio_read(HPET_BASE + HPET_T0_COMPARATOR_LOW);
        if (now == last)
            continue;
        print_comparator("comparator ");
        last = now;
        moves++;
    }
}

void probe_main(uint32_t magic, const uint8_t *info)
{
    (void)magic;
    (void)info;
    __asm__ volatile("cli");
    run("set", -1);
    run("set, then high 0 without VAL_SET", 0);
    puts_("end\n");
    outb(DEBUG_EXIT, 0);
    for (;;)
        __asm__ volatile("hlt");
}
