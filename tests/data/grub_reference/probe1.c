/* Multiboot1 probe: prints the magic, the 116-byte information structure, and what its
 * pointers point at (command line, modules, memory map, loader name, APM table), over COM1,
 * then exits through the isa-debug-exit port. Booted by GRUB 2.06's `multiboot` on QEMU 7.2
 * (RECIPE.md) and by unisim, the two dumps must agree. */
#include <stdint.h>

#define COM1 0x3F8
#define COM1_LSR (COM1 + 5)
#define LSR_THR_EMPTY 0x20
#define DEBUG_EXIT 0xF4
#define INFO_SIZE 116
#define FLAG_CMDLINE (1u << 2)
#define FLAG_MODS (1u << 3)
#define FLAG_MMAP (1u << 6)
#define FLAG_LOADER_NAME (1u << 9)
#define FLAG_APM (1u << 10)
#define APM_TABLE_SIZE 20
#define MODULE_ENTRY_SIZE 16

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

static void dump(const char *label, const uint8_t *bytes, uint32_t length)
{
    puts_(label);
    put(' ');
    for (uint32_t i = 0; i < length; i++)
        hex(bytes[i], 2);
    put('\n');
}

static uint32_t string_length(const char *s)
{
    uint32_t n = 0;
    while (s[n])
        n++;
    return n + 1;                        /* with the NUL */
}

void probe_main(uint32_t magic, const uint8_t *info)
{
    uint32_t flags = *(const uint32_t *)info;
    const uint32_t *field = (const uint32_t *)info;
    puts_("magic ");
    hex(magic, 8);
    put('\n');
    dump("info", info, INFO_SIZE);
    if (flags & FLAG_CMDLINE)
        dump("cmdline", (const uint8_t *)field[4], string_length((const char *)field[4]));
    if (flags & FLAG_MODS) {
        const uint32_t *mods = (const uint32_t *)field[6];
        dump("mods", (const uint8_t *)mods, field[5] * MODULE_ENTRY_SIZE);
        for (uint32_t i = 0; i < field[5]; i++)
            dump("modcmd", (const uint8_t *)mods[i * 4 + 2], string_length((const char *)mods[i * 4 + 2]));
    }
    if (flags & FLAG_MMAP)
        dump("mmap", (const uint8_t *)field[12], field[11]);
    if (flags & FLAG_LOADER_NAME)
        dump("loader", (const uint8_t *)field[16], string_length((const char *)field[16]));
    if (flags & FLAG_APM)
        dump("apm", (const uint8_t *)field[17], APM_TABLE_SIZE);
    puts_("end\n");
    outb(DEBUG_EXIT, 0);
    for (;;)
        __asm__ volatile("cli; hlt");
}
