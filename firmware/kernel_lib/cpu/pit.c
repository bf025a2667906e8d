/* 8254 driver (8254 datasheet, "Control Word Format", "Mode 0", "Mode 2"). */
#include "kernel_lib/cpu/pit.h"
#include "kernel_lib/cpu/interrupts.h"
#include "kernel_lib/cpu/pic.h"
#include "kernel_lib/cpu/ports.h"

#define PIT_CHANNEL0        0x40
#define PIT_CHANNEL2        0x42
#define PIT_COMMAND         0x43
#define PORT_B              0x61

#define PIT_SELECT_CHANNEL0 0x00
#define PIT_SELECT_CHANNEL2 0x80
#define PIT_ACCESS_LOHI     0x30
#define PIT_MODE0           0x00     /* interrupt on terminal count */
#define PIT_MODE2           0x04     /* rate generator              */
#define PORT_B_GATE2        0x01
#define PORT_B_SPEAKER      0x02
#define PORT_B_OUT2         0x20
#define PIT_MAX_DIVISOR     65535u
#define TIMER_IRQ           0

static volatile uint64_t ticks;

static void pit_tick(struct trap_frame *frame)
{
    (void)frame;
    ticks++;
}

int pit_init(uint32_t hz)
{
    uint32_t divisor;

    if (hz == 0 || hz > PIT_INPUT_HZ)
        return -1;
    divisor = PIT_INPUT_HZ / hz;
    if (divisor > PIT_MAX_DIVISOR)
        return -1;
    outb(PIT_COMMAND, PIT_SELECT_CHANNEL0 | PIT_ACCESS_LOHI | PIT_MODE2);
    outb(PIT_CHANNEL0, divisor & 0xFF);
    outb(PIT_CHANNEL0, divisor >> 8);
    irq_set_handler(TIMER_IRQ, pit_tick);
    pic_unmask(TIMER_IRQ);
    return 0;
}

uint64_t pit_ticks(void)
{
    return ticks;
}

int pit_wait_channel2(uint16_t count)
{
    if (count == 0)
        return -1;
    outb(PORT_B, (inb(PORT_B) & ~PORT_B_SPEAKER) | PORT_B_GATE2);
    outb(PIT_COMMAND, PIT_SELECT_CHANNEL2 | PIT_ACCESS_LOHI | PIT_MODE0);
    outb(PIT_CHANNEL2, count & 0xFF);
    outb(PIT_CHANNEL2, count >> 8);
    while ((inb(PORT_B) & PORT_B_OUT2) == 0)
        ;
    return 0;
}
