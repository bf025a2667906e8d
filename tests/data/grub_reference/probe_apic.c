/* Modern-PC probe: prints what a kernel finds of QEMU's `pc` machine beyond the legacy
 * devices - the ACPI tables (RSDP found by the Multiboot2 tag and by the BIOS-area scan,
 * then every table the RSDT lists, and the DSDT and FACS the FADT points at, as bytes), the
 * local APIC's registers at reset, IA32_APIC_BASE, the I/O APIC's identification and
 * redirection table, the HPET's registers, and how many LAPIC timer and HPET ticks pass in
 * 10 ms measured with PIT channel 2, and the PIIX4 power-management registers - over COM1, then exits through isa-debug-exit.
 * Booted by GRUB 2.06 on QEMU 7.2 (RECIPE.md) and by unisim, the two dumps must agree. */
#include <stdint.h>

#define COM1 0x3F8
#define COM1_LSR (COM1 + 5)
#define LSR_THR_EMPTY 0x20
#define DEBUG_EXIT 0xF4
#define TAG_END 0
#define TAG_ACPI_OLD 14
#define TAG_ACPI_NEW 15
#define BIOS_AREA_START 0xE0000
#define BIOS_AREA_END 0x100000
#define RSDP_STEP 16
#define RSDP_V1_SIZE 20
#define ACPI_HEADER_SIZE 36
#define FADT_FACS 36
#define FADT_DSDT 40
#define LAPIC_BASE 0xFEE00000u
#define IOAPIC_BASE 0xFEC00000u
#define HPET_BASE 0xFED00000u
#define MSR_APIC_BASE 0x1B
#define LAPIC_REGISTERS 0x400            /* offsets 0x000-0x3F0, one dword per 16 bytes */
#define LAPIC_EOI 0x0B0
#define LAPIC_TIMER_LVT 0x320
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3E0
#define LVT_MASKED (1u << 16)
#define DIVIDE_BY_16 0x3
#define IOAPIC_ID 0x00
#define IOAPIC_VERSION 0x01
#define IOAPIC_ARBITRATION 0x02
#define IOAPIC_REDIRECTION 0x10
#define HPET_CAPABILITIES 0x000
#define HPET_CONFIG 0x010
#define HPET_STATUS 0x020
#define HPET_COUNTER 0x0F0
#define HPET_TIMER0 0x100
#define HPET_TIMER_STRIDE 0x20
#define HPET_ENABLE 1u
#define PIT_CHANNEL2 0x42
#define PIT_COMMAND 0x43
#define PORT_B 0x61
#define PIT_HZ 1193182u
#define TEN_MS_TICKS (PIT_HZ / 100)
#define PORT_B_GATE2 0x01
#define PORT_B_SPEAKER 0x02
#define PORT_B_OUT2 0x20
#define PM1A_EVENT 0x600
#define PM1A_CONTROL 0x604
#define PM_TIMER 0x608
#define PM_TIMER_MASK 0xFFFFFFu
#define SMI_COMMAND 0xB2
#define ACPI_ENABLE 0xF1

static inline void outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint64_t rdmsr(uint32_t msr) { uint32_t lo, hi; __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr)); return ((uint64_t)hi << 32) | lo; }
static inline uint32_t mmio_read(uint32_t address) { return *(volatile uint32_t *)address; }
static inline void mmio_write(uint32_t address, uint32_t value) { *(volatile uint32_t *)address = value; }

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

static void dump(const char *label, uint32_t address, uint32_t length)
{
    const uint8_t *bytes = (const uint8_t *)address;
    puts_(label);
    put(' ');
    hex(address, 8);
    put(' ');
    for (uint32_t i = 0; i < length; i++)
        hex(bytes[i], 2);
    put('\n');
}

static void dump_table(uint32_t address)
{
    uint32_t length = *(const uint32_t *)(address + 4);
    char name[5] = {0};
    for (int i = 0; i < 4; i++)
        name[i] = ((const char *)address)[i];
    puts_("table ");
    dump(name, address, length);
}

/* Returns the RSDP the BIOS-area scan finds (16-byte steps, "RSD PTR "), or 0. */
static uint32_t scan_rsdp(void)
{
    for (uint32_t a = BIOS_AREA_START; a < BIOS_AREA_END; a += RSDP_STEP) {
        const char *p = (const char *)a;
        if (p[0] == 'R' && p[1] == 'S' && p[2] == 'D' && p[3] == ' ' && p[4] == 'P' && p[5] == 'T' && p[6] == 'R' && p[7] == ' ')
            return a;
    }
    return 0;
}

static void dump_acpi(const uint8_t *info)
{
    uint32_t total = *(const uint32_t *)info;
    for (uint32_t offset = 8; offset + 8 <= total;) {
        uint32_t type = *(const uint32_t *)(info + offset);
        uint32_t size = *(const uint32_t *)(info + offset + 4);
        if (type == TAG_ACPI_OLD || type == TAG_ACPI_NEW) {
            puts_(type == TAG_ACPI_OLD ? "tag-rsdp-v1 " : "tag-rsdp-v2 ");
            for (uint32_t i = 8; i < size; i++)
                hex(info[offset + i], 2);
            put('\n');
        }
        if (type == TAG_END || size < 8)
            break;
        offset = (offset + size + 7) & ~7u;
    }
    uint32_t rsdp = scan_rsdp();
    dump("rsdp", rsdp, RSDP_V1_SIZE);
    if (!rsdp)
        return;
    uint32_t rsdt = *(const uint32_t *)(rsdp + 16);
    dump_table(rsdt);
    uint32_t entries = (*(const uint32_t *)(rsdt + 4) - ACPI_HEADER_SIZE) / 4;
    for (uint32_t i = 0; i < entries; i++) {
        uint32_t table = *(const uint32_t *)(rsdt + ACPI_HEADER_SIZE + 4 * i);
        dump_table(table);
        if (*(const uint32_t *)table == 0x50434146) {            /* "FACP" */
            uint32_t facs = *(const uint32_t *)(table + FADT_FACS);
            dump("facs", facs, *(const uint32_t *)(facs + 4));
            dump_table(*(const uint32_t *)(table + FADT_DSDT));
        }
    }
}

static void dump_lapic(void)
{
    uint64_t base = rdmsr(MSR_APIC_BASE);
    puts_("apic-base-msr ");
    hex((uint32_t)(base >> 32), 8);
    hex((uint32_t)base, 8);
    put('\n');
    puts_("lapic");
    for (uint32_t offset = 0; offset < LAPIC_REGISTERS; offset += 16) {
        put(' ');
        if (offset == LAPIC_EOI) {
            puts_("--------");                                /* write-only */
            continue;
        }
        hex(mmio_read(LAPIC_BASE + offset), 8);
    }
    put('\n');
}

static uint32_t ioapic_read(uint32_t reg)
{
    mmio_write(IOAPIC_BASE, reg);
    return mmio_read(IOAPIC_BASE + 0x10);
}

static void dump_ioapic(void)
{
    puts_("ioapic ");
    hex(ioapic_read(IOAPIC_ID), 8);
    put(' ');
    hex(ioapic_read(IOAPIC_VERSION), 8);
    put(' ');
    hex(ioapic_read(IOAPIC_ARBITRATION), 8);
    uint32_t entries = ((ioapic_read(IOAPIC_VERSION) >> 16) & 0xFF) + 1;
    for (uint32_t i = 0; i < entries; i++) {
        put(' ');
        hex(ioapic_read(IOAPIC_REDIRECTION + 2 * i + 1), 8);
        hex(ioapic_read(IOAPIC_REDIRECTION + 2 * i), 8);
    }
    put('\n');
}

static void dump_hpet(void)
{
    uint32_t timers = ((mmio_read(HPET_BASE + HPET_CAPABILITIES) >> 8) & 0x1F) + 1;
    puts_("hpet");
    for (uint32_t offset = HPET_CAPABILITIES; offset <= HPET_STATUS; offset += 0x10) {
        put(' ');
        hex(mmio_read(HPET_BASE + offset + 4), 8);
        hex(mmio_read(HPET_BASE + offset), 8);
    }
    for (uint32_t t = 0; t < timers; t++) {
        uint32_t timer = HPET_BASE + HPET_TIMER0 + t * HPET_TIMER_STRIDE;
        for (uint32_t offset = 0; offset < 0x18; offset += 8) {
            put(' ');
            hex(mmio_read(timer + offset + 4), 8);
            hex(mmio_read(timer + offset), 8);
        }
    }
    put('\n');
}

/* PIT channel 2 counts 10 ms (gate on, speaker off, mode 0); returns when OUT2 rises. */
static void wait_10ms(void)
{
    outb(PORT_B, (inb(PORT_B) & ~PORT_B_SPEAKER) | PORT_B_GATE2);
    outb(PIT_COMMAND, 0xB0);                                   /* channel 2, lo/hi, mode 0 */
    outb(PIT_CHANNEL2, TEN_MS_TICKS & 0xFF);
    outb(PIT_CHANNEL2, TEN_MS_TICKS >> 8);
    while (!(inb(PORT_B) & PORT_B_OUT2))
        ;
}

static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* The PIIX4 PM registers the FADT names, before and after the ACPI-enable SMI command. */
static void dump_pm(void)
{
    puts_("pm1 ");
    hex(inw(PM1A_EVENT), 4);
    put(' ');
    hex(inw(PM1A_EVENT + 2), 4);
    put(' ');
    hex(inw(PM1A_CONTROL), 4);
    outb(SMI_COMMAND, ACPI_ENABLE);
    put(' ');
    hex(inw(PM1A_CONTROL), 4);
    uint32_t first = inl(PM_TIMER) & PM_TIMER_MASK;
    wait_10ms();
    uint32_t second = inl(PM_TIMER) & PM_TIMER_MASK;
    puts_(" pm-timer-per-10ms ");
    hex((second - first) & PM_TIMER_MASK, 8);
    put('\n');
}

static void measure_timers(void)
{
    mmio_write(LAPIC_BASE + LAPIC_TIMER_DIVIDE, DIVIDE_BY_16);
    mmio_write(LAPIC_BASE + LAPIC_TIMER_LVT, LVT_MASKED);
    mmio_write(HPET_BASE + HPET_CONFIG, HPET_ENABLE);
    uint32_t hpet_before = mmio_read(HPET_BASE + HPET_COUNTER);
    mmio_write(LAPIC_BASE + LAPIC_TIMER_INITIAL, 0xFFFFFFFFu);
    wait_10ms();
    uint32_t lapic_after = mmio_read(LAPIC_BASE + LAPIC_TIMER_CURRENT);
    uint32_t hpet_after = mmio_read(HPET_BASE + HPET_COUNTER);
    puts_("ticks-per-10ms lapic/16 ");
    hex(0xFFFFFFFFu - lapic_after, 8);
    puts_(" hpet ");
    hex(hpet_after - hpet_before, 8);
    put('\n');
}

void probe_main(uint32_t magic, const uint8_t *info)
{
    puts_("magic ");
    hex(magic, 8);
    put('\n');
    dump_acpi(info);
    dump_lapic();
    dump_ioapic();
    dump_hpet();
    measure_timers();
    dump_pm();
    puts_("end\n");
    outb(DEBUG_EXIT, 0);
    for (;;)
        __asm__ volatile("cli; hlt");
}
