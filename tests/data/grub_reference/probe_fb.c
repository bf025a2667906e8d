/* Framebuffer probe: prints the boot information it is handed (Multiboot2: every tag;
 * Multiboot 1: the 116-byte structure and the VBE control/mode information blocks), then the
 * Bochs VBE "DISPI" registers (index port 0x1CE, data port 0x1CF) and the first pixels of the
 * framebuffer, over COM1, and exits through the isa-debug-exit port. Booted by GRUB 2.06 on
 * QEMU 7.2 (RECIPE.md) and by unisim, the two dumps must agree. */
#include <stdint.h>

#define COM1 0x3F8
#define COM1_LSR (COM1 + 5)
#define LSR_THR_EMPTY 0x20
#define DEBUG_EXIT 0xF4
#define TAG_END 0
#define TAG_FRAMEBUFFER 8
#define MB1_MAGIC 0x2BADB002
#define MB1_INFO_SIZE 116
#define MB1_FLAG_VBE (1u << 11)
#define MB1_FLAG_FRAMEBUFFER (1u << 12)
#define VBE_CONTROL_INFO_SIZE 512
#define VBE_MODE_INFO_SIZE 256
#define DISPI_INDEX 0x1CE
#define DISPI_DATA 0x1CF
#define DISPI_REGISTERS 10              /* ID, XRES, YRES, BPP, ENABLE, BANK, VIRT_W, VIRT_H, X_OFF, Y_OFF */
#define PIXELS_SHOWN 4

static inline void outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outw(uint16_t port, uint16_t value) { __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port)); }
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

static void dump(const char *label, const uint8_t *bytes, uint32_t length)
{
    puts_(label);
    put(' ');
    for (uint32_t i = 0; i < length; i++)
        hex(bytes[i], 2);
    put('\n');
}

/* Returns the framebuffer address, or 0 if the loader gave none. */
static uint32_t dump_multiboot1(const uint8_t *info)
{
    uint32_t flags = *(const uint32_t *)info;
    dump("info", info, MB1_INFO_SIZE);
    if (flags & MB1_FLAG_VBE) {
        dump("vbe-control", (const uint8_t *)*(const uint32_t *)(info + 72), VBE_CONTROL_INFO_SIZE);
        dump("vbe-mode", (const uint8_t *)*(const uint32_t *)(info + 76), VBE_MODE_INFO_SIZE);
    }
    return flags & MB1_FLAG_FRAMEBUFFER ? *(const uint32_t *)(info + 88) : 0;
}

/* Returns the framebuffer address, or 0 if the loader gave none. */
static uint32_t dump_multiboot2(const uint8_t *info)
{
    uint32_t total = *(const uint32_t *)info, framebuffer = 0;
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
        if (type == TAG_FRAMEBUFFER)
            framebuffer = *(const uint32_t *)(info + offset + 8);
        if (type == TAG_END || size < 8)
            break;
        offset = (offset + size + 7) & ~7u;
    }
    return framebuffer;
}

void probe_main(uint32_t magic, const uint8_t *info)
{
    puts_("magic ");
    hex(magic, 8);
    put('\n');
    uint32_t framebuffer = magic == MB1_MAGIC ? dump_multiboot1(info) : dump_multiboot2(info);
    puts_("dispi");
    for (uint16_t index = 0; index < DISPI_REGISTERS; index++) {
        outw(DISPI_INDEX, index);
        put(' ');
        hex(inw(DISPI_DATA), 4);
    }
    put('\n');
    if (framebuffer && framebuffer != 0xB8000) {
        puts_("pixels");
        for (int i = 0; i < PIXELS_SHOWN; i++) {
            put(' ');
            hex(((volatile const uint32_t *)framebuffer)[i], 8);
        }
        put('\n');
    }
    puts_("end\n");
    outb(DEBUG_EXIT, 0);
    for (;;)
        __asm__ volatile("cli; hlt");
}
