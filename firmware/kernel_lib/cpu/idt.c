/* The IDT (Intel SDM vol. 3A, 6.14.1: 16-byte gate descriptors in IA-32e mode). */
#include "kernel_lib/cpu/interrupts.h"

#define KERNEL_CODE_SELECTOR   0x08
#define GATE_INTERRUPT_64      0x8E   /* present, DPL 0, 64-bit interrupt gate */

struct idt_gate {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;                      /* bits 0-2: IST index, 0 = current stack */
    uint8_t type_attributes;
    uint16_t offset_middle;
    uint32_t offset_high;
    uint32_t reserved;
} __attribute__((packed));

struct idt_pointer {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

extern const uint64_t isr_table[IDT_VECTORS];

static struct idt_gate idt[IDT_VECTORS] __attribute__((aligned(16)));   /* (vector) */

static void idt_set_gate(unsigned vector, uint64_t handler)
{
    struct idt_gate *gate = &idt[vector];

    gate->offset_low = handler & 0xFFFF;
    gate->selector = KERNEL_CODE_SELECTOR;
    gate->ist = 0;
    gate->type_attributes = GATE_INTERRUPT_64;
    gate->offset_middle = (handler >> 16) & 0xFFFF;
    gate->offset_high = handler >> 32;
    gate->reserved = 0;
}

void idt_init(void)
{
    struct idt_pointer pointer;

    for (unsigned vector = 0; vector < IDT_VECTORS; vector++)
        idt_set_gate(vector, isr_table[vector]);
    pointer.limit = sizeof(idt) - 1;
    pointer.base = (uint64_t)idt;
    __asm__ volatile("lidt %0" : : "m"(pointer));
}
