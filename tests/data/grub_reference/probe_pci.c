/* PCI probe: configuration mechanism #1 on bus 0. For each function present prints
 * `pci <dev>.<fn> <the 256 bytes of configuration space, as dwords>`, then each BAR's size mask
 * (`bar <dev>.<fn> <index> <value read after writing all ones>`, the BAR restored), then
 * vendor/device read as two words through 0xCFC/0xCFE (`words <dev>.<fn> <vendor> <device>`),
 * over COM1; exits through isa-debug-exit. Recorded under QEMU 7.2 (RECIPE.md). */
#include <stdint.h>

#define COM1 0x3F8
#define COM1_LSR (COM1 + 5)
#define LSR_THR_EMPTY 0x20
#define DEBUG_EXIT 0xF4
#define CONFIG_ADDRESS 0xCF8
#define CONFIG_DATA 0xCFC
#define ENABLE 0x80000000u
#define DEVICES 32
#define FUNCTIONS 8
#define HEADER_DWORDS 64
#define BAR_FIRST 0x10
#define BARS 6
#define ABSENT 0xFFFFFFFFu
#define MULTIFUNCTION 0x80

static inline void outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outl(uint16_t port, uint32_t value) { __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port)); }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }

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

static uint32_t address(uint32_t dev, uint32_t fn, uint32_t reg)
{
    return ENABLE | (dev << 11) | (fn << 8) | (reg & 0xFC);
}

static uint32_t read32(uint32_t dev, uint32_t fn, uint32_t reg)
{
    outl(CONFIG_ADDRESS, address(dev, fn, reg));
    return inl(CONFIG_DATA);
}

static void write32(uint32_t dev, uint32_t fn, uint32_t reg, uint32_t value)
{
    outl(CONFIG_ADDRESS, address(dev, fn, reg));
    outl(CONFIG_DATA, value);
}

static void label(const char *what, uint32_t dev, uint32_t fn)
{
    puts_(what);
    hex(dev, 2);
    put('.');
    hex(fn, 1);
}

static void describe(uint32_t dev, uint32_t fn)
{
    label("pci ", dev, fn);
    put(' ');
    for (uint32_t i = 0; i < HEADER_DWORDS; i++)
        hex(read32(dev, fn, i * 4), 8);
    put('\n');
    for (uint32_t bar = 0; bar < BARS; bar++) {
        uint32_t reg = BAR_FIRST + bar * 4, saved = read32(dev, fn, reg);
        write32(dev, fn, reg, ABSENT);
        uint32_t mask = read32(dev, fn, reg);
        write32(dev, fn, reg, saved);
        label("bar ", dev, fn);
        put(' ');
        hex(bar, 1);
        put(' ');
        hex(mask, 8);
        put('\n');
    }
    outl(CONFIG_ADDRESS, address(dev, fn, 0));
    uint16_t vendor = inw(CONFIG_DATA), device = inw(CONFIG_DATA + 2);
    label("words ", dev, fn);
    put(' ');
    hex(vendor, 4);
    put(' ');
    hex(device, 4);
    put('\n');
}

void probe_main(uint32_t magic, const uint8_t *info)
{
    (void)magic;
    (void)info;
    outl(CONFIG_ADDRESS, address(0, 0, 0));
    puts_("address-latch ");
    hex(inl(CONFIG_ADDRESS), 8);
    put('\n');
    for (uint32_t dev = 0; dev < DEVICES; dev++) {
        if (read32(dev, 0, 0) == ABSENT) {
            continue;
        }
        uint32_t functions = (read32(dev, 0, 0x0C) >> 16) & MULTIFUNCTION ? FUNCTIONS : 1;
        for (uint32_t fn = 0; fn < functions; fn++)
            if (read32(dev, fn, 0) != ABSENT)
                describe(dev, fn);
    }
    label("absent ", 31, 7);
    put(' ');
    hex(read32(31, 7, 0), 8);
    put('\n');
    puts_("end\n");
    outb(DEBUG_EXIT, 0);
    for (;;)
        __asm__ volatile("cli; hlt");
}
