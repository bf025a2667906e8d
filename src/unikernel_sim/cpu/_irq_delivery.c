/* The common case of delivering an external interrupt through the guest's IDT, in C
 * (Intel SDM vol. 3A 6.12.1 and 6.14): no privilege change, the gate, its code
 * segment, the TSS (for an IST stack) and the stack all present and well formed.
 * Python (cpu/delivery.py) stays the reference and does everything else: faults
 * while delivering, #DF, triple faults, privilege changes, 16-bit gates, reports.
 *
 * irq_deliver returns IRQ_DELIVERED with the handler's state loaded, or a reason
 * code (> 0) without having changed anything: then Python delivers the same
 * interrupt from scratch, producing the same frame or the fault chain. The checks
 * mirror delivery.py's in the same order; tests run the same guests both ways.
 *
 * Memory is read and written by physical address after a page walk of our own
 * (SDM vol. 3A chapter 4: 32-bit, PAE and 4-level paging), as paging.py does. Reads
 * (page-table entries, the gate, the code segment's descriptor, the IST slot) come
 * straight from guest RAM's host memory: through uc_mem_read each cost two region
 * lookups and an address-space translation, ~14 calls an IRQ in IA-32e mode
 * (docs/performance.md). The frame is written through uc_mem_write, so that Unicorn
 * drops translated code the frame overwrites. */
#include <stdint.h>
#include <string.h>

#include "_irq_delivery.h"

#define CR0_PE 0x1ull
#define CR0_WP 0x10000ull
#define CR0_PG 0x80000000ull
#define CR4_PSE 0x10ull
#define CR4_PAE 0x20ull
#define EFER_LMA 0x400ull
#define PTE_P 0x1ull
#define PTE_RW 0x2ull
#define PTE_PS 0x80ull
#define ADDRESS_MASK_64 0x000FFFFFFFFFF000ull
#define RFLAGS_TF 0x100ull
#define RFLAGS_IF 0x200ull
#define RFLAGS_NT 0x4000ull
#define RFLAGS_RF 0x10000ull
#define RFLAGS_VM 0x20000ull
#define GATE_INTERRUPT_32 0xE
#define GATE_TRAP_32 0xF
#define TSS64_IST1 0x24
#define PAGE 4096ull
#define NO_EXCEPTION 0xFFFFFFFFu      /* QEMU's old_exception when none is in flight (-1) */

struct uc_x86_mmr {                   /* unicorn/x86.h: IDTR, GDTR, TR */
    uint16_t selector;
    uint64_t base;
    uint32_t limit;
    uint32_t flags;
};

struct uc_x86_msr_value {
    uint32_t rid;
    uint64_t value;
};

/* Read size bytes of guest RAM at physical address; 0 on success, 1 past its end. */
static int read_physical(const struct irq_ctx *c, uint64_t address, void *out, uint64_t size)
{
    if (address > c->ram_size || size > c->ram_size - address)
        return 1;
    memcpy(out, c->ram_host + address, size);
    return 0;
}

static uint64_t reg(void *uc, const struct irq_ctx *c, int64_t id)
{
    uint64_t value = 0;
    c->reg_read(uc, (int)id, &value);
    return value;
}

/* Physical address of virtual, writable along the whole walk; 0 on success. */
static int translate(const struct irq_ctx *c, const struct paging *p, uint64_t virtual,
                     uint64_t *physical, int *writable)
{
    *writable = 1;
    if (!(p->cr0 & CR0_PG)) {
        *physical = virtual & 0xFFFFFFFFull;
        return 0;
    }
    int levels, entry_size, first_shift;
    uint64_t table;
    if (p->efer & EFER_LMA) {
        levels = 4, entry_size = 8, first_shift = 39, table = p->cr3 & ADDRESS_MASK_64;
    } else if (p->cr4 & CR4_PAE) {
        levels = 3, entry_size = 8, first_shift = 30, table = p->cr3 & 0xFFFFFFE0ull;
    } else {
        levels = 2, entry_size = 4, first_shift = 22, table = p->cr3 & 0xFFFFF000ull;
    }
    int shift = first_shift;
    for (int level = 0; level < levels; level++, shift -= (entry_size == 8 ? 9 : 10)) {
        int pae_pdpte = levels == 3 && level == 0;
        uint64_t index_mask = pae_pdpte ? 3 : (entry_size == 8 ? 0x1FF : 0x3FF);
        uint64_t address = table + ((virtual >> shift) & index_mask) * (uint64_t)entry_size;
        uint64_t entry = 0;
        if (read_physical(c, address, &entry, (uint64_t)entry_size))
            return 1;
        if (!(entry & PTE_P))
            return 1;
        if (!pae_pdpte && !(entry & PTE_RW))
            *writable = 0;
        int last = level == levels - 1;
        int large = !last && !pae_pdpte && (entry & PTE_PS) && (entry_size == 8 || (p->cr4 & CR4_PSE));
        if (large || last) {
            uint64_t page_size = 1ull << shift;
            uint64_t base;
            if (entry_size == 4)
                base = large ? (entry & 0xFFC00000ull) | (((entry >> 13) & 0xFF) << 32) : entry & 0xFFFFF000ull;
            else
                base = entry & ADDRESS_MASK_64 & ~(page_size - 1);
            *physical = base | (virtual & (page_size - 1));
            return 0;
        }
        table = entry_size == 8 ? entry & ADDRESS_MASK_64 : entry & 0xFFFFF000ull;
    }
    return 1;
}

/* Read length bytes at virtual (page by page); 0 on success. */
static int read_virtual(const struct irq_ctx *c, const struct paging *p, uint64_t virtual, void *out,
                        uint64_t length)
{
    uint8_t *bytes = out;
    while (length) {
        uint64_t physical;
        int writable;
        uint64_t chunk = PAGE - (virtual & (PAGE - 1));
        if (chunk > length)
            chunk = length;
        if (translate(c, p, virtual, &physical, &writable) || read_physical(c, physical, bytes, chunk))
            return 1;
        virtual += chunk, bytes += chunk, length -= chunk;
    }
    return 0;
}

/* Write the frame at virtual as a supervisor push would: every page present, and writable
 * when CR0.WP is set; checked before anything is written. 0 on success. */
static int write_stack(void *uc, const struct irq_ctx *c, const struct paging *p, uint64_t virtual,
                       const void *data, uint64_t length)
{
    uint64_t physical[2], chunk[2];
    int pieces = 0;
    uint64_t at = virtual, left = length;
    while (left) {
        int writable;
        if (pieces == 2 || translate(c, p, at, &physical[pieces], &writable))
            return 1;
        if ((p->cr0 & CR0_WP) && !writable)
            return 1;
        chunk[pieces] = PAGE - (at & (PAGE - 1));
        if (chunk[pieces] > left)
            chunk[pieces] = left;
        if (physical[pieces] + chunk[pieces] > c->ram_size)
            return 1;
        at += chunk[pieces], left -= chunk[pieces], pieces++;
    }
    const uint8_t *bytes = data;
    for (int i = 0; i < pieces; i++) {
        if (c->mem_write(uc, physical[i], bytes, chunk[i]) != 0)
            return 1;
        bytes += chunk[i];
    }
    return 0;
}

/* The handler's code segment: present, code, DPL not above CPL (and 64-bit in IA-32e
 * mode). Returns its privilege level, or -1 (Python will raise the fault). */
static int code_segment_cpl(void *uc, const struct irq_ctx *c, const struct paging *p, uint16_t selector,
                            int long_mode, int cpl)
{
    struct uc_x86_mmr gdtr;
    uint64_t descriptor;
    uint16_t index = selector & ~7u;
    if (index == 0 || (selector & 4))
        return -1;
    memset(&gdtr, 0, sizeof gdtr);
    c->reg_read(uc, (int)c->reg_gdtr, &gdtr);
    if ((uint32_t)index + 7 > gdtr.limit || read_virtual(c, p, gdtr.base + index, &descriptor, 8))
        return -1;
    unsigned access = (descriptor >> 40) & 0xFF;
    if ((access & 0x18) != 0x18 || !(access & 0x80))
        return -1;
    if (long_mode && !((descriptor >> 53) & 1))
        return -1;
    return (access & 0x04) ? cpl : (int)((access >> 5) & 3);
}

static void load_handler(void *uc, const struct irq_ctx *c, uint16_t selector, int cpl, uint64_t target,
                         uint64_t rsp, uint64_t rflags, int interrupt_gate)
{
    uint64_t cs = (selector & ~3u) | (unsigned)cpl;
    rflags &= ~(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_VM);
    if (interrupt_gate)
        rflags &= ~RFLAGS_IF;
    c->reg_write(uc, (int)c->reg_cs, &cs);
    c->reg_write(uc, (int)c->reg_rsp, &rsp);
    c->reg_write(uc, (int)c->reg_rflags, &rflags);
    c->reg_write(uc, (int)c->reg_rip, &target);
}

/* The gate of vector (size 8 or 16 bytes): within the IDT limit, readable, a present
 * 32/64-bit interrupt or trap gate. Returns its type, or 0 (Python raises the fault;
 * 16-bit and task gates go there too). */
static unsigned fetch_gate(void *uc, const struct irq_ctx *c, const struct paging *p, uint32_t vector,
                           uint8_t *gate, uint32_t size)
{
    struct uc_x86_mmr idtr;
    memset(&idtr, 0, sizeof idtr);
    c->reg_read(uc, (int)c->reg_idtr, &idtr);
    if (vector * size + size - 1 > idtr.limit || read_virtual(c, p, idtr.base + vector * size, gate, size))
        return 0;
    unsigned attributes = gate[5], type = attributes & 0xF;
    if ((type != GATE_INTERRUPT_32 && type != GATE_TRAP_32) || !(attributes & 0x80))
        return 0;
    return type;
}

static int deliver_long(void *uc, struct irq_ctx *c, const struct paging *p, uint32_t vector, uint64_t return_rip)
{
    uint8_t gate[16];
    unsigned type = fetch_gate(uc, c, p, vector, gate, sizeof gate);
    if (!type)
        return IRQ_DECLINED_GATE;
    uint16_t selector = (uint16_t)(gate[2] | gate[3] << 8);
    uint64_t target = (uint64_t)(gate[0] | gate[1] << 8) | (uint64_t)(gate[6] | gate[7] << 8) << 16
                      | (uint64_t)((uint32_t)gate[8] | (uint32_t)gate[9] << 8 | (uint32_t)gate[10] << 16
                                   | (uint32_t)gate[11] << 24) << 32;
    uint64_t cs = reg(uc, c, c->reg_cs);
    int cpl = (int)(cs & 3);
    int new_cpl = code_segment_cpl(uc, c, p, selector, 1, cpl);
    if (new_cpl < 0 || new_cpl != cpl)
        return IRQ_DECLINED_SEGMENT;                   /* faults and privilege changes: Python */
    uint64_t old_rsp = reg(uc, c, c->reg_rsp);
    uint64_t rsp = old_rsp;
    unsigned ist = gate[4] & 7;
    if (ist) {
        struct uc_x86_mmr tr;
        memset(&tr, 0, sizeof tr);
        c->reg_read(uc, (int)c->reg_tr, &tr);
        uint32_t offset = TSS64_IST1 + 8 * (ist - 1);
        if ((tr.selector & ~7u) == 0 || offset + 7 > tr.limit || read_virtual(c, p, tr.base + offset, &rsp, 8))
            return IRQ_DECLINED_STACK;
    }
    rsp &= ~0xFull;
    uint64_t rflags = reg(uc, c, c->reg_rflags);
    uint64_t frame[5] = {return_rip, cs, rflags, old_rsp, reg(uc, c, c->reg_ss)};
    uint64_t new_rsp = rsp - sizeof frame;
    /* canonical: bits 63..47 all equal */
    if (((int64_t)(new_rsp << 16) >> 16) != (int64_t)new_rsp || ((int64_t)((rsp - 1) << 16) >> 16) != (int64_t)(rsp - 1))
        return IRQ_DECLINED_STACK;
    if (write_stack(uc, c, p, new_rsp, frame, sizeof frame))
        return IRQ_DECLINED_STACK;
    load_handler(uc, c, selector, new_cpl, target, new_rsp, rflags, type == GATE_INTERRUPT_32);
    return IRQ_DELIVERED;
}

static int deliver_protected(void *uc, struct irq_ctx *c, const struct paging *p, uint32_t vector,
                             uint64_t return_rip)
{
    uint8_t gate[8];
    unsigned type = fetch_gate(uc, c, p, vector, gate, sizeof gate);
    if (!type)
        return IRQ_DECLINED_GATE;
    uint16_t selector = (uint16_t)(gate[2] | gate[3] << 8);
    uint64_t target = (uint64_t)(gate[0] | gate[1] << 8) | (uint64_t)(gate[6] | gate[7] << 8) << 16;
    uint64_t cs = reg(uc, c, c->reg_cs);
    int cpl = (int)(cs & 3);
    int new_cpl = code_segment_cpl(uc, c, p, selector, 0, cpl);
    if (new_cpl < 0 || new_cpl != cpl)
        return IRQ_DECLINED_SEGMENT;
    uint64_t rflags = reg(uc, c, c->reg_rflags);
    uint32_t frame[3] = {(uint32_t)return_rip, (uint32_t)(cs & 0xFFFF), (uint32_t)rflags};
    uint32_t new_esp = (uint32_t)reg(uc, c, c->reg_rsp) - (uint32_t)sizeof frame;
    if (write_stack(uc, c, p, new_esp, frame, sizeof frame))
        return IRQ_DECLINED_STACK;
    load_handler(uc, c, selector, new_cpl, target, new_esp, rflags, type == GATE_INTERRUPT_32);
    return IRQ_DELIVERED;
}

/* Write length bytes at virtual through the guest's page tables, as the host does for
 * a guest call's return address and stack arguments (no protection check: the host,
 * not the guest, writes). 0 on success; 1 with nothing written if a page is absent. */
static struct paging current_paging(void *uc, const struct irq_ctx *c)
{
    struct paging p = {reg(uc, c, c->reg_cr0), reg(uc, c, c->reg_cr3), reg(uc, c, c->reg_cr4), 0};
    struct uc_x86_msr_value efer = {0xC0000080u, 0};
    c->reg_read(uc, (int)c->reg_msr, &efer);
    p.efer = efer.value;
    return p;
}

int guest_write_virtual(void *uc, struct irq_ctx *c, uint64_t virtual, const void *data, uint64_t length)
{
    struct paging p = current_paging(uc, c);
    p.cr0 &= ~CR0_WP;                                   /* the host's write: no write protection */
    return write_stack(uc, c, &p, virtual, data, length);
}

/* Read length bytes at virtual through the guest's page tables (the host's read: no
 * protection check). 0 on success; 1 if a page is absent or outside guest RAM. */
int guest_read_virtual(void *uc, struct irq_ctx *c, uint64_t virtual, void *out, uint64_t length)
{
    struct paging p = current_paging(uc, c);
    return read_virtual(c, &p, virtual, out, length);
}

/* QEMU state the API does not reach, read and patched in a saved CPU context (Q2, Q14):
 * the 32-bit word at offset. saved_word: 0 on success. */
static int saved_word(void *uc, struct irq_ctx *c, int64_t offset, uint32_t *value)
{
    if (c->context_save(uc, c->context) != 0)
        return 1;
    memcpy(value, (uint8_t *)c->context + offset, sizeof *value);
    return 0;
}

/* Put value at offset in the context saved_word saved, and load it; 0 on success. */
static int restore_word(void *uc, struct irq_ctx *c, int64_t offset, uint32_t value)
{
    memcpy((uint8_t *)c->context + offset, &value, sizeof value);
    return c->context_restore(uc, c->context) != 0;
}

/* HLT completes (the CPU halted, and an interrupt woke it): the one-instruction shadow of
 * a STI or MOV SS just before it ends, as QEMU's helper_hlt clears HF_INHIBIT_IRQ, so that
 * `sti; hlt` takes the interrupt. 0 on success. */
int irq_end_shadow(void *uc, struct irq_ctx *c)
{
    uint32_t hflags;
    if (saved_word(uc, c, c->hflags_offset, &hflags))
        return 1;
    if (!(hflags & c->inhibit_irq_mask))
        return 0;
    return restore_word(uc, c, c->hflags_offset, hflags & ~(uint32_t)c->inhibit_irq_mask);
}

/* RFLAGS.IF: whether the guest enabled external interrupts. */
int irq_flag_set(void *uc, struct irq_ctx *c)
{
    return (reg(uc, c, c->reg_rflags) & RFLAGS_IF) != 0;
}

/* Whether the CPU takes an external interrupt now: IF set and not in the one-instruction
 * shadow of STI / MOV SS (QEMU's HF_INHIBIT_IRQ, read from a saved context: Q14). */
int irq_ready(void *uc, struct irq_ctx *c)
{
    uint32_t hflags;
    if (!(reg(uc, c, c->reg_rflags) & RFLAGS_IF) || saved_word(uc, c, c->hflags_offset, &hflags))
        return 0;
    return !(hflags & c->inhibit_irq_mask);
}

/* Reset QEMU's old_exception before a slice (Q2; unicorn_compat.clear_exception_in_flight). */
void irq_clear_exception_in_flight(void *uc, struct irq_ctx *c)
{
    uint32_t old_exception;
    if (saved_word(uc, c, c->old_exception_offset, &old_exception) == 0 && old_exception != NO_EXCEPTION)
        restore_word(uc, c, c->old_exception_offset, NO_EXCEPTION);
}

int irq_deliver(void *uc, struct irq_ctx *c, uint32_t vector)
{
    struct paging p = {0, 0, 0, 0};
    uint64_t return_rip = reg(uc, c, c->reg_rip);
    uint64_t old_rsp = reg(uc, c, c->reg_rsp);
    struct uc_x86_msr_value efer = {0xC0000080u, 0};
    int result;
    p.cr0 = reg(uc, c, c->reg_cr0);
    if (!(p.cr0 & CR0_PE)) {
        result = IRQ_DECLINED_MODE;
    } else {
        p.cr3 = reg(uc, c, c->reg_cr3);
        p.cr4 = reg(uc, c, c->reg_cr4);
        c->reg_read(uc, (int)c->reg_msr, &efer);
        p.efer = efer.value;
        if (reg(uc, c, c->reg_rflags) & RFLAGS_VM)
            result = IRQ_DECLINED_MODE;
        else if (p.efer & EFER_LMA)
            result = deliver_long(uc, c, &p, vector, return_rip);
        else
            result = deliver_protected(uc, c, &p, vector, return_rip);
    }
    c->last_return_rip = return_rip;
    if (result == IRQ_DELIVERED) {
        c->delivered++;
        c->last_old_rsp = old_rsp;
        c->last_new_rsp = reg(uc, c, c->reg_rsp);
        c->last_long_mode = (p.efer & EFER_LMA) != 0;
    } else {
        c->declined++;
    }
    return result;
}
