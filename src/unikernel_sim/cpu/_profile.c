/* An exact profile of the guest, kept in C: a UC_HOOK_BLOCK hook added after the
 * clock's own (vclock_block), so it runs once the block has been counted and knows
 * its instruction count (instructions - block_start).
 *
 * Per block it keeps
 *   - a calling-context tree: a function entry (a block that starts at a function's
 *     first address) pushes a child of the current node; the guest's RSP rising
 *     above the RSP a frame was entered with pops it (the function returned, or an
 *     interrupt handler ran IRET). The block's instructions go to the current node.
 *   - executions per block start (the host turns them into per-line counts).
 * A block that starts at the entry of the function already on top, with the same
 * RSP, is a jump back to its first instruction (a loop), not a call; at the entry
 * of another function with the same RSP it is a tail call, which replaces the top.
 *
 * Tables grow by doubling; an allocation that fails sets `failed` and the profile
 * stops growing (the host reports it). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_vclock.h"

#define MAX_DEPTH 4096

struct frame {
    uint32_t node;
    uint64_t rsp;
};

struct node {
    uint32_t parent;
    int32_t function;                 /* index into the function table; -1: the root   */
    uint64_t self;                    /* instructions counted while this node was on top */
    uint64_t calls;                   /* times it was entered                          */
};

struct profile {
    struct vclock *clock;
    uc_reg_read_fn reg_read;
    int64_t reg_sp;
    /* function entries: open addressing, address -> index; capacity a power of two */
    uint64_t *entry_keys;
    int32_t *entry_values;
    uint64_t entry_capacity;
    /* [start, end) of each sized function, sorted by start: code reached at the root
     * (after a stack switch, before the first call) is put in the function around it */
    const uint64_t *range_starts, *range_ends;
    const int32_t *range_functions;
    uint64_t range_count;
    /* calling-context tree */
    struct node *nodes;
    uint64_t node_count, node_capacity;
    uint64_t *child_keys;             /* (parent << 32 | function + 1), 0: empty        */
    uint32_t *child_values;
    uint64_t child_capacity;
    struct frame stack[MAX_DEPTH];
    uint64_t depth;
    /* executions per block start */
    uint64_t *block_keys;             /* address + 1, 0: empty                          */
    uint64_t *block_runs;
    uint64_t *block_counts;           /* the block's instruction count                  */
    uint64_t *block_sizes;            /* and its bytes (the host tells 32- from 64-bit code) */
    uint64_t block_used, block_capacity;
    uint64_t failed;
    uint64_t too_deep;                /* pushes dropped at MAX_DEPTH                    */
};

static uint64_t mix(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return key;
}

static int32_t function_at(const struct profile *p, uint64_t address)
{
    uint64_t mask = p->entry_capacity - 1;
    for (uint64_t i = mix(address) & mask;; i = (i + 1) & mask) {
        if (p->entry_values[i] < 0)
            return -1;
        if (p->entry_keys[i] == address)
            return p->entry_values[i];
    }
}

static int grow_nodes(struct profile *p)
{
    uint64_t capacity = p->node_capacity * 2;
    struct node *nodes = realloc(p->nodes, capacity * sizeof *nodes);
    if (!nodes)
        return 0;
    p->nodes = nodes;
    p->node_capacity = capacity;
    return 1;
}

static int grow_children(struct profile *p)
{
    uint64_t capacity = p->child_capacity * 2, mask = capacity - 1;
    uint64_t *keys = calloc(capacity, sizeof *keys);
    uint32_t *values = calloc(capacity, sizeof *values);
    if (!keys || !values) {
        free(keys);
        free(values);
        return 0;
    }
    for (uint64_t i = 0; i < p->child_capacity; i++) {
        uint64_t j;
        if (!p->child_keys[i])
            continue;
        for (j = mix(p->child_keys[i]) & mask; keys[j]; j = (j + 1) & mask)
            ;
        keys[j] = p->child_keys[i];
        values[j] = p->child_values[i];
    }
    free(p->child_keys);
    free(p->child_values);
    p->child_keys = keys;
    p->child_values = values;
    p->child_capacity = capacity;
    return 1;
}

/* The node for `function` called from `parent`; UINT32_MAX if out of memory. */
static uint32_t child(struct profile *p, uint32_t parent, int32_t function)
{
    uint64_t key = ((uint64_t)parent << 32) | (uint32_t)(function + 1), mask, i;
    if (p->node_count * 2 >= p->child_capacity && !grow_children(p))
        return UINT32_MAX;
    mask = p->child_capacity - 1;
    for (i = mix(key) & mask; p->child_keys[i]; i = (i + 1) & mask)
        if (p->child_keys[i] == key)
            return p->child_values[i];
    if (p->node_count == p->node_capacity && !grow_nodes(p))
        return UINT32_MAX;
    p->nodes[p->node_count] = (struct node){parent, function, 0, 0};
    p->child_keys[i] = key;
    p->child_values[i] = (uint32_t)p->node_count;
    return (uint32_t)p->node_count++;
}

static int grow_blocks(struct profile *p)
{
    uint64_t capacity = p->block_capacity * 2, mask = capacity - 1;
    uint64_t *keys = calloc(capacity, sizeof *keys);
    uint64_t *runs = calloc(capacity, sizeof *runs);
    uint64_t *counts = calloc(capacity, sizeof *counts);
    uint64_t *sizes = calloc(capacity, sizeof *sizes);
    if (!keys || !runs || !counts || !sizes) {
        free(keys);
        free(runs);
        free(counts);
        free(sizes);
        return 0;
    }
    for (uint64_t i = 0; i < p->block_capacity; i++) {
        uint64_t j;
        if (!p->block_keys[i])
            continue;
        for (j = mix(p->block_keys[i]) & mask; keys[j]; j = (j + 1) & mask)
            ;
        keys[j] = p->block_keys[i];
        runs[j] = p->block_runs[i];
        counts[j] = p->block_counts[i];
        sizes[j] = p->block_sizes[i];
    }
    free(p->block_keys);
    free(p->block_runs);
    free(p->block_counts);
    free(p->block_sizes);
    p->block_keys = keys;
    p->block_runs = runs;
    p->block_counts = counts;
    p->block_sizes = sizes;
    p->block_capacity = capacity;
    return 1;
}

static void count_block(struct profile *p, uint64_t address, uint64_t icount, uint64_t size)
{
    uint64_t key = address + 1, mask, i;
    if (p->block_used * 2 >= p->block_capacity && !grow_blocks(p)) {
        p->failed = 1;
        return;
    }
    mask = p->block_capacity - 1;
    for (i = mix(key) & mask; p->block_keys[i] && p->block_keys[i] != key; i = (i + 1) & mask)
        ;
    if (!p->block_keys[i]) {
        p->block_keys[i] = key;
        p->block_used++;
    }
    p->block_runs[i]++;
    p->block_counts[i] = icount;
    p->block_sizes[i] = size;
}

/* The function whose [start, end) holds address; -1 if none. */
static int32_t function_around(const struct profile *p, uint64_t address)
{
    uint64_t low = 0, high = p->range_count;
    while (low < high) {                          /* the last start <= address */
        uint64_t middle = (low + high) / 2;
        if (p->range_starts[middle] <= address)
            low = middle + 1;
        else
            high = middle;
    }
    if (low == 0 || address >= p->range_ends[low - 1])
        return -1;
    return p->range_functions[low - 1];
}

void profile_block(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct profile *p = user_data;
    struct vclock *vc = p->clock;
    uint64_t rsp = 0, icount;
    int32_t function;
    if (!vc->in_block || vc->block_pc != address)
        return;                                   /* the clock stopped before this block */
    icount = vc->instructions - vc->block_start;
    p->reg_read(uc, (int)p->reg_sp, &rsp);
    while (p->depth > 1 && rsp > p->stack[p->depth - 1].rsp)
        p->depth--;                               /* returned (RET, IRET) */
    function = function_at(p, address);
    if (function < 0 && p->depth == 1)
        function = function_around(p, address);   /* no frame yet: the code's own function */
    if (function >= 0) {
        struct frame *top = &p->stack[p->depth - 1];
        int32_t on_top = p->nodes[top->node].function;
        if (!(on_top == function && top->rsp == rsp)) {       /* not a jump back to its entry */
            uint32_t parent = top->node, node;
            if (p->depth > 1 && top->rsp == rsp) {            /* a tail call replaces the top */
                parent = p->nodes[top->node].parent;
                p->depth--;
            }
            node = child(p, parent, function);
            if (node == UINT32_MAX) {
                p->failed = 1;
            } else if (p->depth < MAX_DEPTH) {
                p->stack[p->depth++] = (struct frame){node, rsp};
                p->nodes[node].calls++;
            } else {
                p->too_deep++;
            }
        }
    }
    p->nodes[p->stack[p->depth - 1].node].self += icount;
    count_block(p, address, icount, size);
}

/* A stop inside a block: `unrun` of the instructions counted at its start did not run. */
void profile_uncount(struct profile *p, uint64_t address, uint64_t unrun)
{
    uint64_t key = address + 1, mask = p->block_capacity - 1;
    p->nodes[p->stack[p->depth - 1].node].self -= unrun;
    for (uint64_t i = mix(key) & mask; p->block_keys[i]; i = (i + 1) & mask)
        if (p->block_keys[i] == key) {
            p->block_runs[i]--;                   /* the host records the partial run itself */
            return;
        }
}

struct profile *profile_new(struct vclock *clock, void *reg_read, int64_t reg_sp,
                            const uint64_t *entries, uint64_t entry_count,
                            const uint64_t *range_starts, const uint64_t *range_ends,
                            const int32_t *range_functions, uint64_t range_count)
{
    struct profile *p = calloc(1, sizeof *p);
    uint64_t capacity = 16;
    if (!p)
        return NULL;
    while (capacity < entry_count * 2 + 2)
        capacity *= 2;
    p->clock = clock;
    p->range_starts = range_starts;               /* the host keeps these arrays alive */
    p->range_ends = range_ends;
    p->range_functions = range_functions;
    p->range_count = range_count;
    p->reg_read = (uc_reg_read_fn)reg_read;
    p->reg_sp = reg_sp;
    p->entry_capacity = capacity;
    p->entry_keys = calloc(capacity, sizeof *p->entry_keys);
    p->entry_values = malloc(capacity * sizeof *p->entry_values);
    p->node_capacity = 1024;
    p->nodes = malloc(p->node_capacity * sizeof *p->nodes);
    p->child_capacity = 4096;
    p->child_keys = calloc(p->child_capacity, sizeof *p->child_keys);
    p->child_values = calloc(p->child_capacity, sizeof *p->child_values);
    p->block_capacity = 4096;
    p->block_keys = calloc(p->block_capacity, sizeof *p->block_keys);
    p->block_runs = calloc(p->block_capacity, sizeof *p->block_runs);
    p->block_counts = calloc(p->block_capacity, sizeof *p->block_counts);
    p->block_sizes = calloc(p->block_capacity, sizeof *p->block_sizes);
    if (!p->entry_keys || !p->entry_values || !p->nodes || !p->child_keys || !p->child_values ||
        !p->block_keys || !p->block_runs || !p->block_counts || !p->block_sizes) {
        p->failed = 1;
        return p;                                 /* profile_free releases what was taken */
    }
    memset(p->entry_values, 0xff, capacity * sizeof *p->entry_values);     /* -1: empty */
    for (uint64_t n = 0; n < entry_count; n++) {
        uint64_t mask = capacity - 1, i;
        for (i = mix(entries[n]) & mask; p->entry_values[i] >= 0 && p->entry_keys[i] != entries[n];
             i = (i + 1) & mask)
            ;
        p->entry_keys[i] = entries[n];
        p->entry_values[i] = (int32_t)n;
    }
    p->nodes[0] = (struct node){0, -1, 0, 0};     /* the root: code before any known entry */
    p->node_count = 1;
    p->stack[0] = (struct frame){0, UINT64_MAX};
    p->depth = 1;
    return p;
}

void profile_free(struct profile *p)
{
    if (!p)
        return;
    free(p->entry_keys);
    free(p->entry_values);
    free(p->nodes);
    free(p->child_keys);
    free(p->child_values);
    free(p->block_keys);
    free(p->block_runs);
    free(p->block_counts);
    free(p->block_sizes);
    free(p);
}

/* Readers for the host. */
uint64_t profile_node_count(const struct profile *p) { return p->node_count; }
uint64_t profile_failed(const struct profile *p) { return p->failed; }
uint64_t profile_too_deep(const struct profile *p) { return p->too_deep; }

void profile_nodes(const struct profile *p, uint32_t *parents, int32_t *functions, uint64_t *selfs,
                   uint64_t *calls)
{
    for (uint64_t i = 0; i < p->node_count; i++) {
        parents[i] = p->nodes[i].parent;
        functions[i] = p->nodes[i].function;
        selfs[i] = p->nodes[i].self;
        calls[i] = p->nodes[i].calls;
    }
}

uint64_t profile_block_count(const struct profile *p) { return p->block_used; }

void profile_blocks(const struct profile *p, uint64_t *addresses, uint64_t *runs, uint64_t *counts,
                    uint64_t *sizes)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < p->block_capacity; i++)
        if (p->block_keys[i]) {
            addresses[n] = p->block_keys[i] - 1;
            runs[n] = p->block_runs[i];
            counts[n] = p->block_counts[i];
            sizes[n] = p->block_sizes[i];
            n++;
        }
}
