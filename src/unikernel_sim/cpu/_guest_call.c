/* A guest call's set-up and tear-down, one C call each (guest_call.py has the ABI and
 * the cases this does not take: float arguments, a frame over a page).
 *
 * Through the binding the set-up was ~15 us of a ~50 us call: a context save, a
 * register read, a page walk for the return address, a byte compare for the
 * sentinel and a register write per argument, each a trip through ctypes. Here
 * they are direct calls into Unicorn (System V AMD64 psABI 3.2.2-3.2.3: integer
 * arguments in RDI, RSI, RDX, RCX, R8, R9, the rest on the stack in 8-byte slots,
 * RSP 16-byte aligned at the call; AL = vector registers used). */
#include <stdint.h>
#include <string.h>

#include "_irq_delivery.h"

#define CALL_INTEGER_REGISTERS 6
#define CALL_STACK_WORDS 500           /* the frame stays within one 4 KiB page          */
#define CALL_UNMAPPED (-1)             /* the guest stack is not mapped: nothing changed */
#define CALL_SENTINEL_FAILED (-2)      /* the sentinel's hlt could not be written        */
#define OPCODE_HLT 0xF4

/* Mirrored by CallFrame in guest_call.py (same order, same types). */
struct call_frame {
    int64_t reg_arguments[CALL_INTEGER_REGISTERS];   /* Unicorn's ids of RDI .. R9           */
    int64_t reg_rax;
    uint64_t red_zone;                 /* bytes below the interrupted RSP left alone     */
    uint64_t function;                 /* the callee                                     */
    uint64_t vector_count;             /* AL at the call                                 */
    uint64_t integer_count;            /* arguments in registers                          */
    uint64_t integers[CALL_INTEGER_REGISTERS];
    uint64_t stack_count;              /* arguments on the stack                          */
    uint64_t words[1 + CALL_STACK_WORDS];   /* the return address (sentinel), then those  */
};

/* Make sure the sentinel holds hlt (why it can stay there: guest_call.py). 0, or
 * CALL_SENTINEL_FAILED. */
int guest_call_arm_sentinel(void *uc, const struct irq_ctx *c, uint64_t sentinel)
{
    uint8_t byte = 0;
    static const uint8_t hlt = OPCODE_HLT;
    if (c->mem_read(uc, sentinel, &byte, 1) == 0 && byte == OPCODE_HLT)
        return 0;
    return c->mem_write(uc, sentinel, &hlt, 1) == 0 ? 0 : CALL_SENTINEL_FAILED;
}

/* Save the guest's registers in saved_context, push the frame below the red zone and
 * load the argument registers, RAX, RSP and RIP. 0 on success; CALL_UNMAPPED or
 * CALL_SENTINEL_FAILED with the guest's state unchanged. */
int guest_call_enter(void *uc, struct irq_ctx *c, void *saved_context, struct call_frame *f)
{
    uint64_t rsp = 0, words = 1 + f->stack_count;
    if (f->stack_count > CALL_STACK_WORDS || f->integer_count > CALL_INTEGER_REGISTERS)
        return CALL_UNMAPPED;
    int sentinel = guest_call_arm_sentinel(uc, c, f->words[0]);
    if (sentinel != 0)
        return sentinel;
    if (c->context_save(uc, saved_context) != 0)
        return CALL_UNMAPPED;
    c->reg_read(uc, (int)c->reg_rsp, &rsp);
    rsp -= f->red_zone + 8 * f->stack_count;
    rsp &= ~0xFull;                    /* aligned at the call instruction */
    rsp -= 8;                          /* the return address              */
    if (guest_write_virtual(uc, c, rsp, f->words, 8 * words) != 0)
        return CALL_UNMAPPED;
    for (uint64_t i = 0; i < f->integer_count; i++)
        c->reg_write(uc, (int)f->reg_arguments[i], &f->integers[i]);
    c->reg_write(uc, (int)f->reg_rax, &f->vector_count);
    c->reg_write(uc, (int)c->reg_rsp, &rsp);
    c->reg_write(uc, (int)c->reg_rip, &f->function);
    return 0;
}

/* The call returned: RAX, with the guest's registers put back as they were. */
uint64_t guest_call_leave(void *uc, struct irq_ctx *c, void *saved_context, const struct call_frame *f)
{
    uint64_t rax = 0;
    c->reg_read(uc, (int)f->reg_rax, &rax);
    c->context_restore(uc, saved_context);
    return rax;
}

uint64_t call_frame_struct_size(void)
{
    return sizeof(struct call_frame);
}
