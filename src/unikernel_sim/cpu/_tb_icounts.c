/* The instruction counts of translated blocks, learnt as Unicorn translates them.
 *
 * Deterministic mode adds each block's instruction count when the block starts
 * (vclock_block). Unicorn will say it (uc_ctl UC_CTL_TB_REQUEST_CACHE), but that is
 * a varargs call and a hash lookup of the CPU state, ~4.7 of the hook's ~10 ns a
 * block. This table answers from the block hook's own arguments, (address, size).
 *
 * Why a count from this table is the executing block's count:
 * - Every block Unicorn 2.1.4 translates on its run path goes through tb_find,
 *   which reports it to UC_HOOK_EDGE_GENERATED hooks with its pc, size and icount,
 *   but only once some block has run to its end in the engine's life (not left by an
 *   exception or hlt: docs/unicorn-quirks.md, Q29). The clock runs such a block, then
 *   flushes the translation cache and installs the report hook (vclock.py), so no
 *   block it counts predates the table. The only other translations are uc_ctl's
 *   own (learnt here from its answer) and icount mode's uncached blocks (not used by
 *   Unicorn).
 * - The same (address, size) can be two live blocks with different counts: code
 *   rewritten in place (the old block is invalidated, its entry stays), the same
 *   bytes decoded in another mode, another page mapped at the same address. Two
 *   reports that disagree make the pair disputed for good: it is asked of Unicorn
 *   every time, as before this table. Nothing is forgotten while the table lives,
 *   so a block cannot outlive the knowledge that its pair is disputed.
 * - A full table takes no new pairs (they are asked of Unicorn); it still records
 *   disputes of the pairs it holds.
 *
 * Open addressing, linear probing, at most half full; it doubles up to TABLE_SLOTS_MAX.
 * The lookup (inline in _tb_icounts.h) answers a block looked up last from a copy. */
#include <stdlib.h>

#include "_tb_icounts.h"

#define TABLE_SLOTS_FIRST (1u << 12)
#define TABLE_SLOTS_MAX (1u << 20)        /* 16 MiB: half a million blocks */

struct tb_icounts *tb_icounts_new(void)
{
    struct tb_icounts *table = calloc(1, sizeof *table);
    if (table == NULL)
        return NULL;
    table->slots = calloc(TABLE_SLOTS_FIRST, sizeof *table->slots);
    if (table->slots == NULL) {
        free(table);
        return NULL;
    }
    table->slot_bits = __builtin_ctz(TABLE_SLOTS_FIRST);
    return table;
}

void tb_icounts_free(struct tb_icounts *table)
{
    if (table == NULL)
        return;
    free(table->slots);
    free(table);
}

/* Doubles the table. Returns 0 if it is at its largest or memory ran out. */
static int grow(struct tb_icounts *table)
{
    uint64_t old_count = 1ull << table->slot_bits;
    struct tb_slot *old = table->slots;
    if (old_count >= TABLE_SLOTS_MAX)
        return 0;
    struct tb_slot *slots = calloc(old_count * 2, sizeof *slots);
    if (slots == NULL)
        return 0;
    table->slots = slots;
    table->slot_bits++;
    for (uint64_t i = 0; i < old_count; i++)
        if (old[i].state != TB_SLOT_EMPTY)
            *tb_icounts_find(table, old[i].pc, old[i].size) = old[i];
    free(old);
    return 1;
}

/* A block Unicorn translated (or told uc_ctl about): pc, its size in bytes, its
 * instruction count. */
void tb_icounts_learn(struct tb_icounts *table, uint64_t pc, uint32_t size, uint32_t icount)
{
    if (icount == TB_ICOUNT_UNKNOWN || icount > UINT16_MAX || size > UINT16_MAX)
        return;                           /* not a count a struct uc_tb can carry */
    struct tb_slot *s = tb_icounts_find(table, pc, size);
    if (s->state == TB_SLOT_KNOWN && s->icount != icount) {
        s->state = TB_SLOT_DISPUTED;         /* two live blocks may share the pair: ask each time */
        s->icount = TB_ICOUNT_UNKNOWN;
        table->disputed++;
        if (table->last_pc == pc && table->last_size == size)
            table->last_size = 0;         /* no longer answered from the last lookup */
        return;
    }
    if (s->state != TB_SLOT_EMPTY)
        return;
    if ((table->used + 1) * 2 > (1ull << table->slot_bits)) {
        if (!grow(table))
            return;                       /* full: this pair is asked of Unicorn */
        s = tb_icounts_find(table, pc, size);
    }
    s->pc = pc;
    s->size = (uint16_t)size;
    s->icount = (uint16_t)icount;
    s->state = TB_SLOT_KNOWN;
    table->used++;
}

uint64_t tb_icounts_known(const struct tb_icounts *table)
{
    return table->used - table->disputed;
}

uint64_t tb_icounts_disputed(const struct tb_icounts *table)
{
    return table->disputed;
}

/* tb_icounts_lookup for the host (tests check the table's contract through it). */
uint32_t tb_icounts_count(struct tb_icounts *table, uint64_t pc, uint32_t size)
{
    return tb_icounts_lookup(table, pc, size);
}
