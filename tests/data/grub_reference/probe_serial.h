/* What the HPET probes share: port and MMIO access, and text on COM1 (polled 16550). */
#ifndef PROBE_SERIAL_H
#define PROBE_SERIAL_H

#include <stdint.h>

#define COM1 0x3F8
#define COM1_LSR (COM1 + 5)
#define LSR_THR_EMPTY 0x20
#define DEBUG_EXIT 0xF4

static inline void outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t mmio_read(uint32_t address) { return *(volatile uint32_t *)address; }
static inline void mmio_write(uint32_t address, uint32_t value) { *(volatile uint32_t *)address = value; }

static void put(char c)
{
    while (!(inb(COM1_LSR) & LSR_THR_EMPTY))
        ;
    outb(COM1, (uint8_t)c);
}

static void puts_(const char *s) { while (*s) put(*s++); }

static void hex(uint32_t value)          /* eight hex digits */
{
    for (int shift = 28; shift >= 0; shift -= 4)
        put("0123456789abcdef"[(value >> shift) & 0xF]);
}

#endif
