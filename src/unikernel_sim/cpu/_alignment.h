/* struct align_table: the SSE alignment guard's sites, shared by _alignment.c and the
 * counting hook in _vclock.c. Mirrored by AlignTable/AlignSite in cpu/alignment_guard.py. */
#ifndef UNISIM_ALIGNMENT_H
#define UNISIM_ALIGNMENT_H

#include <stdint.h>

#include "_vclock.h"

struct align_site {                   /* one instruction with an m128 operand that must be aligned */
    uint64_t address;                 /* where the instruction starts                           */
    int64_t base_reg;                 /* Unicorn register ids; 0: none                          */
    int64_t index_reg;
    int64_t segment_base_reg;         /* UC_X86_REG_FS_BASE / GS_BASE for fs:/gs:; 0: none      */
    int64_t displacement;             /* RIP-relative operands are decided at load time         */
    uint64_t scale;
    uint64_t address_mask;            /* 0xFFFFFFFF for 32-bit addressing                       */
};

struct align_table {
    uint64_t count;                   /* sites, sorted by address                               */
    struct align_site *sites;
    uint64_t lo, hi;                  /* the first and last site's address                      */
    uint8_t *bitmap;                  /* bit (address - lo): a site starts there                */
    uint64_t hit_address;             /* the misaligned site reached; UINT64_MAX: none          */
    uint64_t hit_operand;             /* its operand's address                                  */
    uint64_t skip_address;            /* let this site run once (reported, not faulted)         */
    uint64_t checked;                 /* site executions checked                                */
    uc_reg_read_fn reg_read;
    uc_emu_stop_fn emu_stop;
};

/* Whether a site starts at address (one bit test: the counting hook asks for every instruction). */
static inline int align_is_site(const struct align_table *t, uint64_t address)
{
    uint64_t offset = address - t->lo;
    return address >= t->lo && address <= t->hi && (t->bitmap[offset >> 3] >> (offset & 7) & 1);
}

/* Check the site at address; returns 1 if its operand is misaligned and emu_stop was called. */
int align_check(void *uc, struct align_table *t, uint64_t address);

#endif
