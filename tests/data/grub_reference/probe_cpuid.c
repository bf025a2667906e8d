/* CPUID probe: prints `cpuid <leaf> <subleaf> <eax> <ebx> <ecx> <edx>` for the basic and
 * extended leaves a kernel reads, over COM1, then exits through isa-debug-exit. Booted by
 * GRUB 2.06 on QEMU 7.2 with -cpu qemu64 and -cpu Haswell (RECIPE.md), it records what those
 * models answer; unisim's --cpu tables are checked against the recordings. */
#include <stdint.h>

#define COM1 0x3F8
#define COM1_LSR (COM1 + 5)
#define LSR_THR_EMPTY 0x20
#define DEBUG_EXIT 0xF4
#define EXTENDED_BASE 0x80000000u
#define SUBLEAF_LEAVES 4                 /* leaves 4, 7, 0xb and 0xd have subleaves */

static inline void outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static void put(char c)
{
    while (!(inb(COM1_LSR) & LSR_THR_EMPTY))
        ;
    outb(COM1, (uint8_t)c);
}

static void hex(uint32_t value)
{
    for (int shift = 28; shift >= 0; shift -= 4)
        put("0123456789abcdef"[(value >> shift) & 0xF]);
}

static void query(uint32_t leaf, uint32_t subleaf)
{
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(subleaf));
    const char *label = "cpuid ";
    while (*label)
        put(*label++);
    uint32_t values[6] = {leaf, subleaf, a, b, c, d};
    for (int i = 0; i < 6; i++) {
        hex(values[i]);
        put(i == 5 ? '\n' : ' ');
    }
}

static int has_subleaves(uint32_t leaf)
{
    static const uint32_t leaves[SUBLEAF_LEAVES] = {4, 7, 0xb, 0xd};
    for (int i = 0; i < SUBLEAF_LEAVES; i++)
        if (leaves[i] == leaf)
            return 1;
    return 0;
}

void probe_main(uint32_t magic, const uint8_t *info)
{
    uint32_t max_basic, max_extended, unused;
    (void)magic;
    (void)info;
    __asm__ volatile("cpuid" : "=a"(max_basic), "=b"(unused), "=c"(unused), "=d"(unused) : "a"(0), "c"(0));
    __asm__ volatile("cpuid" : "=a"(max_extended), "=b"(unused), "=c"(unused), "=d"(unused)
                     : "a"(EXTENDED_BASE), "c"(0));
    for (uint32_t leaf = 0; leaf <= max_basic; leaf++)
        for (uint32_t sub = 0; sub < (has_subleaves(leaf) ? 4u : 1u); sub++)
            query(leaf, sub);
    for (uint32_t leaf = EXTENDED_BASE; leaf <= max_extended; leaf++)
        query(leaf, 0);
    outb(DEBUG_EXIT, 0);
    for (;;)
        __asm__ volatile("cli; hlt");
}
