/* The instruction counts of translated blocks, learnt as Unicorn translates them
 * (_tb_icounts.c). Deterministic mode counts every block it runs; asking Unicorn
 * (uc_ctl UC_CTL_TB_REQUEST_CACHE, a hash lookup behind a varargs call) was half
 * the block hook's time. */
#ifndef UNISIM_TB_ICOUNTS_H
#define UNISIM_TB_ICOUNTS_H

#include <stdint.h>

#define TB_ICOUNT_UNKNOWN 0u          /* not in the table, or two blocks disagree: ask Unicorn */

struct uc_tb {                        /* unicorn.h: what the block hook's count comes from */
    uint64_t pc;
    uint16_t icount;
    uint16_t size;
};

enum tb_slot_state { TB_SLOT_EMPTY = 0, TB_SLOT_KNOWN = 1, TB_SLOT_DISPUTED = 2 };

struct tb_slot {
    uint64_t pc;
    uint16_t size;
    uint16_t icount;                  /* TB_ICOUNT_UNKNOWN when disputed */
    uint8_t state;                    /* enum tb_slot_state */
};

struct tb_icounts {
    struct tb_slot *slots;
    uint32_t slot_bits;               /* slots = 1 << slot_bits */
    uint64_t used;
    uint64_t disputed;
    uint64_t last_pc;                 /* the block looked up last (a loop asks for it again): */
    uint32_t last_size;               /* a known pair, or size 0 for none                     */
    uint32_t last_icount;
};

#define TB_ICOUNTS_HASH 0x9E3779B97F4A7C15ull      /* 2^64 / golden ratio: Fibonacci hashing */

static inline uint64_t tb_icounts_index(uint64_t pc, uint32_t size, uint32_t bits)
{
    return ((pc ^ ((uint64_t)size << 48)) * TB_ICOUNTS_HASH) >> (64 - bits);
}

/* The slot holding (pc, size), or the empty slot where it would go (the table is
 * never more than half full). */
static inline struct tb_slot *tb_icounts_find(const struct tb_icounts *table, uint64_t pc, uint32_t size)
{
    uint64_t mask = (1ull << table->slot_bits) - 1;
    for (uint64_t i = tb_icounts_index(pc, size, table->slot_bits);; i = (i + 1) & mask) {
        struct tb_slot *s = &table->slots[i];
        if (s->state == TB_SLOT_EMPTY || (s->pc == pc && s->size == size))
            return s;
    }
}

/* The count of the block at pc with size bytes, inline in the block hook. Returns
 * TB_ICOUNT_UNKNOWN if the table does not know it or two blocks disagreed. */
static inline uint32_t tb_icounts_lookup(struct tb_icounts *table, uint64_t pc, uint32_t size)
{
    if (pc == table->last_pc && size == table->last_size)
        return table->last_icount;
    const struct tb_slot *s = tb_icounts_find(table, pc, size);
    if (s->state != TB_SLOT_KNOWN)
        return TB_ICOUNT_UNKNOWN;
    table->last_pc = pc;
    table->last_size = size;
    table->last_icount = s->icount;
    return s->icount;
}

struct tb_icounts *tb_icounts_new(void);                 /* NULL if out of memory */
void tb_icounts_free(struct tb_icounts *table);
void tb_icounts_learn(struct tb_icounts *table, uint64_t pc, uint32_t size, uint32_t icount);
uint32_t tb_icounts_count(struct tb_icounts *table, uint64_t pc, uint32_t size);   /* the lookup, exported */
uint64_t tb_icounts_known(const struct tb_icounts *table);      /* blocks with one count */
uint64_t tb_icounts_disputed(const struct tb_icounts *table);   /* blocks asked of Unicorn for ever */

#endif
