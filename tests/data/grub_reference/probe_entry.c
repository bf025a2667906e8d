/* Entry-state probe: prints the registers the boot loader handed over (saved by
 * entry_state.S before anything ran) and the GDT they point into, over COM1. The GDT's
 * base and ESP are where the loader's own memory happened to be: informative, not compared. */
#include <stdint.h>

#define COM1 0x3F8
#define COM1_LSR (COM1 + 5)
#define LSR_THR_EMPTY 0x20
#define DEBUG_EXIT 0xF4

struct saved {
    uint32_t eax, ebx, esp, eflags, cs, ds, es, ss, fs, gs;
    uint16_t gdt_limit; uint32_t gdt_base; uint16_t pad0;
    uint16_t idt_limit; uint32_t idt_base; uint16_t pad1;
    uint32_t cr0, cr4, tr, ldtr;
} __attribute__((packed));

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

static void field(const char *name, uint32_t value, int digits)
{
    puts_(name);
    put(' ');
    hex(value, digits);
    put('\n');
}

void probe_main(const struct saved *s)
{
    field("eax", s->eax, 8);
    field("eflags", s->eflags, 8);
    field("cs", s->cs & 0xFFFF, 4);
    field("ds", s->ds & 0xFFFF, 4);
    field("es", s->es & 0xFFFF, 4);
    field("ss", s->ss & 0xFFFF, 4);
    field("fs", s->fs & 0xFFFF, 4);
    field("gs", s->gs & 0xFFFF, 4);
    field("gdt-limit", s->gdt_limit, 4);
    field("gdt-base", s->gdt_base, 8);
    field("esp", s->esp, 8);
    field("idt-limit", s->idt_limit, 4);
    field("idt-base", s->idt_base, 8);
    field("cr0", s->cr0, 8);
    field("cr4", s->cr4, 8);
    field("tr", s->tr & 0xFFFF, 4);
    field("ldtr", s->ldtr & 0xFFFF, 4);
    puts_("gdt");
    const uint8_t *gdt = (const uint8_t *)s->gdt_base;
    for (uint32_t i = 0; i <= s->gdt_limit; i++) {
        if (i % 8 == 0)
            put(' ');
        hex(gdt[i], 2);
    }
    put('\n');
    puts_("end\n");
    outb(DEBUG_EXIT, 0);
    for (;;)
        __asm__ volatile("cli; hlt");
}
