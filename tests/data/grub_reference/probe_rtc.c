/* RTC probe: the MC146818's interrupt flags (register C) and its IRQ 8 line, with
 * interrupts off. Time is the HPET's main counter (100 MHz); IRQ 8's edges are read from
 * the slave 8259 with the poll command (OCW3 P, which acknowledges like an INTA), so no
 * IDT is needed, and the master's mask keeps every request from the CPU. Counts that depend
 * on the host's speed print as "in range" verdicts; everything prints at the end.
 * Booted by GRUB 2.06 on QEMU 7.2 (RECIPE.md) and by unisim, the output must agree. */
#include <stdint.h>

#include "probe_serial.h"

#define RTC_INDEX 0x70
#define RTC_DATA 0x71
#define REG_SECONDS 0x00
#define REG_SECONDS_ALARM 0x01
#define REG_MINUTES_ALARM 0x03
#define REG_HOURS_ALARM 0x05
#define REG_A 0x0A
#define REG_B 0x0B
#define REG_C 0x0C
#define A_DIVIDER_NORMAL 0x20           /* bits 6-4 = 010: the 32.768 kHz time base runs */
#define B_PIE 0x40
#define B_AIE 0x20
#define B_UIE 0x10
#define B_BINARY 0x04
#define B_24_HOUR 0x02
#define ALARM_DONT_CARE 0xC0
#define C_IRQF 0x80                      /* register C: an enabled flag is set (IRQ 8 asserted) */
#define C_PF 0x40                        /* periodic */
#define C_AF 0x20                        /* alarm */
#define C_UF 0x10                        /* update ended */

#define SLAVE_COMMAND 0xA0
#define SLAVE_DATA 0xA1
#define MASTER_COMMAND 0x20
#define MASTER_DATA 0x21
#define OCW3_POLL 0x0C
#define OCW3_READ_IRR 0x0A
#define POLL_REQUEST 0x80                /* poll byte: a request was pending (bits 2-0: its line) */
#define EOI 0x20

#define HPET_BASE 0xFED00000u
#define HPET_CONFIG 0x010
#define HPET_COUNTER_LOW 0x0F0
#define HPET_ENABLE 1u
#define TICKS_PER_MS 100000u

static uint8_t rtc_read(uint8_t index) { outb(RTC_INDEX, index); return inb(RTC_DATA); }
static void rtc_write(uint8_t index, uint8_t value) { outb(RTC_INDEX, index); outb(RTC_DATA, value); }

static void wait_ms(uint32_t ms)
{
    uint32_t start = mmio_read(HPET_BASE + HPET_COUNTER_LOW);
    while (mmio_read(HPET_BASE + HPET_COUNTER_LOW) - start < ms * TICKS_PER_MS)
        ;
}

/* Edges IRQ 8 latched at the slave since the last call: poll, acknowledge and end each. */
static uint32_t irq8_edges(void)
{
    uint32_t edges = 0;
    for (;;) {
        outb(SLAVE_COMMAND, OCW3_POLL);
        uint8_t poll = inb(SLAVE_COMMAND);
        if (!(poll & POLL_REQUEST))
            return edges;
        edges++;
        outb(SLAVE_COMMAND, EOI);
        outb(MASTER_COMMAND, EOI);
    }
}

/* What the probe saw, printed only at the end: printing between the measurements would
 * put the serial line's speed into them. */
#define MAX_RESULTS 32
static const char *labels[MAX_RESULTS];
static uint32_t values[MAX_RESULTS], lows[MAX_RESULTS], highs[MAX_RESULTS];
static int results;

static void line(const char *label, uint32_t value)
{
    labels[results] = label;
    values[results] = value;
    lows[results] = 1;
    highs[results++] = 0;                         /* low > high: print the value itself */
}

static void verdict(const char *label, uint32_t value, uint32_t low, uint32_t high)
{
    labels[results] = label;
    values[results] = value;
    lows[results] = low;
    highs[results++] = high;
}

static void print_results(void)
{
    for (int i = 0; i < results; i++) {
        puts_(labels[i]);
        if (lows[i] > highs[i]) {
            put(' ');
            hex(values[i]);
            put('\n');
        } else {
            puts_(values[i] >= lows[i] && values[i] <= highs[i] ? " in range\n" : " OUT OF RANGE\n");
        }
    }
}

/* COM1 at 115200 baud, 8N1, as GRUB leaves it (the output's pace is then the same everywhere). */
static void serial_init(void)
{
    outb(COM1 + 3, 0x80);                         /* LCR: DLAB */
    outb(COM1 + 0, 1);                            /* divisor 1: 115200 baud */
    outb(COM1 + 1, 0);
    outb(COM1 + 3, 0x03);                         /* 8 data bits, no parity, 1 stop bit */
}

/* Register C without UF: an update (each second, whatever UIE says) may fall into any
 * window of the periodic tests, on QEMU as here; the update tests come after them. */
static uint8_t periodic_flags(void) { return rtc_read(REG_C) & (uint8_t)~C_UF; }

/* Register C flags seen by reading it every poll for ms milliseconds (each read clears). */
static uint32_t flags_in(uint32_t ms, uint8_t flag)
{
    uint32_t seen = 0, start = mmio_read(HPET_BASE + HPET_COUNTER_LOW);
    while (mmio_read(HPET_BASE + HPET_COUNTER_LOW) - start < ms * TICKS_PER_MS)
        if (rtc_read(REG_C) & flag)
            seen++;
    return seen;
}

/* Read register C until it is not zero or ms pass; returns what it read last. */
static uint8_t wait_for_flags(uint32_t ms)
{
    uint32_t start = mmio_read(HPET_BASE + HPET_COUNTER_LOW);
    uint8_t c = 0;
    while (!c && mmio_read(HPET_BASE + HPET_COUNTER_LOW) - start < ms * TICKS_PER_MS)
        c = rtc_read(REG_C);
    return c;
}

void probe_main(uint32_t magic, const uint8_t *info)
{
    (void)magic;
    (void)info;
    __asm__ volatile("cli");
    serial_init();
    mmio_write(HPET_BASE + HPET_CONFIG, HPET_ENABLE);
    outb(SLAVE_DATA, 0xFE);                        /* IRQ 8 unmasked at the slave (polled)... */
    outb(MASTER_DATA, 0xFF);                       /* ...and nothing reaches the CPU */
    line("start A", rtc_read(REG_A));
    line("start B", rtc_read(REG_B));
    rtc_write(REG_B, B_24_HOUR | B_BINARY);
    rtc_read(REG_C);
    irq8_edges();

    rtc_write(REG_A, A_DIVIDER_NORMAL | 6);         /* 1024 Hz */
    wait_ms(10);
    line("rate 6, PIE off, 10 ms: C", periodic_flags());
    line("IRQ 8 edges", irq8_edges());

    rtc_write(REG_B, B_24_HOUR | B_BINARY | B_PIE);
    wait_ms(10);
    line("PIE on, 10 ms: IRQ 8 edges", irq8_edges());
    rtc_write(REG_A, A_DIVIDER_NORMAL | 15);        /* 2 Hz: no tick between the next two reads */
    line("C", periodic_flags());
    line("C again", periodic_flags());
    rtc_write(REG_A, A_DIVIDER_NORMAL | 6);
    wait_ms(10);
    line("10 ms without reading C: IRQ 8 edges", irq8_edges());
    wait_ms(10);
    line("10 ms more: IRQ 8 edges", irq8_edges());
    line("C", periodic_flags());
    wait_ms(10);
    line("C read, 10 ms: IRQ 8 edges", irq8_edges());
    rtc_read(REG_C);

    /* A read sees PF if a tick fell since the read before, so a count is at most the ticks
     * in its window (the upper bounds: no faster rate passes), and a host that stalls the
     * emulator merges ticks (on QEMU as here): the lower bounds only keep out the next
     * slower rate (rate 1: 25.6 in 100 ms, rate 6: 10.2 in 10 ms, rate 2: 12.8 in 100 ms). */
    verdict("rate 6 (1024 Hz), 100 ms of PF", flags_in(100, C_PF), 30, 110);
    rtc_write(REG_A, A_DIVIDER_NORMAL | 3);         /* 8192 Hz */
    verdict("rate 3 (8192 Hz), 10 ms of PF", flags_in(10, C_PF), 15, 90);
    rtc_write(REG_A, A_DIVIDER_NORMAL | 1);         /* 256 Hz (rates 1 and 2 are 3.906 and 7.8 ms) */
    verdict("rate 1 (256 Hz), 100 ms of PF", flags_in(100, C_PF), 15, 28);
    rtc_write(REG_A, A_DIVIDER_NORMAL | 15);        /* 2 Hz */
    verdict("rate 15 (2 Hz), 1100 ms of PF", flags_in(1100, C_PF), 2, 3);
    rtc_write(REG_A, A_DIVIDER_NORMAL);             /* rate 0: none */
    rtc_read(REG_C);
    wait_ms(10);
    line("rate 0, PIE on, 10 ms: C", periodic_flags());
    irq8_edges();

    rtc_write(REG_A, A_DIVIDER_NORMAL | 6);
    rtc_write(REG_B, B_24_HOUR | B_BINARY);
    rtc_read(REG_C);
    wait_ms(1100);
    line("UIE off, 1100 ms: C", rtc_read(REG_C));
    wait_ms(1100);
    rtc_write(REG_B, B_24_HOUR | B_BINARY | B_UIE);
    line("1100 ms, then UIE on: IRQ 8 edges", irq8_edges());
    line("C", rtc_read(REG_C));
    line("UIE on, the next update: C", wait_for_flags(1100));
    line("IRQ 8 edges", irq8_edges());

    rtc_write(REG_B, B_24_HOUR | B_BINARY);
    rtc_read(REG_C);
    uint8_t second = rtc_read(REG_SECONDS);
    rtc_write(REG_SECONDS_ALARM, (uint8_t)((second + 2) % 60));
    rtc_write(REG_MINUTES_ALARM, ALARM_DONT_CARE);
    rtc_write(REG_HOURS_ALARM, ALARM_DONT_CARE);
    rtc_write(REG_B, B_24_HOUR | B_BINARY | B_AIE);
    uint32_t updates = 0;
    uint8_t c = 0;
    for (int tries = 0; tries < 4 && !(c & C_AF); tries++) {
        c = wait_for_flags(1100);
        updates++;
    }
    line("AIE on, alarm 2 s ahead: C at the alarm", c);
    verdict("updates seen before it", updates, 2, 3);
    line("IRQ 8 edges", irq8_edges());
    print_results();
    puts_("end\n");
    outb(DEBUG_EXIT, 0);
    for (;;)
        __asm__ volatile("hlt");
}
