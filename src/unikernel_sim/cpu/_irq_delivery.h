/* struct irq_ctx: what the C interrupt delivery needs from Unicorn, set up once by
 * cpu/fast_delivery.py (mirrored there as IrqContext: same order, same types). */
#ifndef UNISIM_IRQ_DELIVERY_H
#define UNISIM_IRQ_DELIVERY_H

#include <stdint.h>

#include "_vclock.h"

#define IRQ_DELIVERED 0
#define IRQ_DECLINED_MODE 1          /* real mode, virtual-8086 */
#define IRQ_DECLINED_GATE 2          /* beyond the IDT, not present, 16-bit or task gate, unmapped */
#define IRQ_DECLINED_SEGMENT 3       /* the code segment faults, or the privilege changes */
#define IRQ_DECLINED_STACK 4         /* the stack (or the TSS's IST slot) would fault */

typedef int (*uc_mem_read_fn)(void *uc, uint64_t address, void *bytes, uint64_t size);
typedef int (*uc_context_fn)(void *uc, void *context);
typedef int (*uc_mem_write_fn)(void *uc, uint64_t address, const void *bytes, uint64_t size);

struct irq_ctx {
    uc_reg_read_fn reg_read;
    uc_reg_write_fn reg_write;
    uc_mem_read_fn mem_read;
    uc_mem_write_fn mem_write;
    uint64_t ram_size;
    const uint8_t *ram_host;         /* guest physical 0 in this process (memory/ram.py): reads */
    int64_t reg_rip, reg_rsp, reg_rflags, reg_cs, reg_ss;
    int64_t reg_cr0, reg_cr3, reg_cr4, reg_msr;
    int64_t reg_idtr, reg_gdtr, reg_tr;
    uint64_t delivered;              /* interrupts delivered here             */
    uint64_t declined;               /* handed back to Python                 */
    uc_context_fn context_save;      /* uc_context_save / uc_context_restore  */
    uc_context_fn context_restore;
    void *context;                   /* a uc_context the host allocated (CPU only) */
    int64_t hflags_offset;           /* QEMU's hflags in it (unicorn_compat.context_offsets) */
    int64_t old_exception_offset;    /* QEMU's old_exception in it (Q2) */
    uint64_t inhibit_irq_mask;       /* HF_INHIBIT_IRQ: the STI / MOV SS shadow (Q14) */
    uint64_t last_return_rip;        /* the latest delivery in C: where it returns,   */
    uint64_t last_old_rsp;           /* the stack pointer before and after the frame, */
    uint64_t last_new_rsp;
    uint64_t last_long_mode;         /* and whether it was an IA-32e delivery         */
};

struct paging {
    uint64_t cr0, cr3, cr4, efer;
};

int irq_deliver(void *uc, struct irq_ctx *c, uint32_t vector);
int irq_ready(void *uc, struct irq_ctx *c);
int irq_flag_set(void *uc, struct irq_ctx *c);
int guest_write_virtual(void *uc, struct irq_ctx *c, uint64_t virtual, const void *data, uint64_t length);
int guest_read_virtual(void *uc, struct irq_ctx *c, uint64_t virtual, void *out, uint64_t length);
int irq_end_shadow(void *uc, struct irq_ctx *c);
void irq_clear_exception_in_flight(void *uc, struct irq_ctx *c);

#endif
