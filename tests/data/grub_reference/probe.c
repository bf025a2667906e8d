/* Multiboot2 probe: prints the magic and every byte of the boot information it is
 * handed, one tag per line, over COM1, then exits through the isa-debug-exit port.
 * Booted by GRUB 2.06 on QEMU 7.2 (RECIPE.md) and by unisim, the two dumps must agree. */
#include <stdint.h>

#define COM1 0x3F8
#define COM1_LSR (COM1 + 5)
#define LSR_THR_EMPTY 0x20
#define DEBUG_EXIT 0xF4
#define TAG_END 0

static inline void outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static void put(char c)
{
    while (!(inb(COM1_LSR) & LSR_THR_EMPTY))
        ;
    outb(COM1, (uint8_t)c);
}

static void puts_(const char *s) { while (*s) put(*s++); }

static void hex(uint32_t value, int digits)
{
    for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4)
        put("0123456789abcdef"[(value >> shift) & 0xF]);
}

void probe_main(uint32_t magic, const uint8_t *info)
{
    uint32_t total = *(const uint32_t *)info;
    puts_("magic ");
    hex(magic, 8);
    puts_("\ninfo-size ");
    hex(total, 8);
    put('\n');
    for (uint32_t offset = 8; offset + 8 <= total;) {
        uint32_t type = *(const uint32_t *)(info + offset);
        uint32_t size = *(const uint32_t *)(info + offset + 4);
        puts_("tag ");
        hex(type, 2);
        put(' ');
        hex(size, 4);
        put(' ');
        for (uint32_t i = 8; i < size; i++)
            hex(info[offset + i], 2);
        put('\n');
        if (type == TAG_END || size < 8)
            break;
        offset = (offset + size + 7) & ~7u;
    }
    puts_("end\n");
    outb(DEBUG_EXIT, 0);
    for (;;)
        __asm__ volatile("cli; hlt");
}
