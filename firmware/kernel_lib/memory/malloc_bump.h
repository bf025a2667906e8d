/* A bump allocator over one 64 MiB heap placed from the Multiboot2 memory map.
 *
 * Semantics (the host model in unikernel_sim/kernel_lib/heap_model.py mirrors
 * them exactly):
 *  - every block is [16-byte header][payload], payload 16-byte aligned and
 *    rounded up to a multiple of 16; malloc(0) allocates a 16-byte payload;
 *  - free() of the most recently allocated block gives its bytes back (the
 *    bump pointer moves back); free() of any other block only counts it;
 *  - realloc() grows or shrinks the last block in place, otherwise allocates,
 *    copies and frees the old block.
 */
#ifndef KERNEL_LIB_MEMORY_MALLOC_BUMP_H
#define KERNEL_LIB_MEMORY_MALLOC_BUMP_H
#include <stddef.h>
#include <stdint.h>
#include "boot/multiboot2.h"

#define HEAP_SIZE            (64ull * 1024 * 1024)
#define HEAP_ALIGN           16
#define HEAP_HEADER_SIZE     16

struct heap_stats {
    uint64_t start;          /* first byte of the heap               */
    uint64_t end;            /* one past the last byte               */
    uint64_t next;           /* the bump pointer                     */
    uint64_t used;           /* next - start                         */
    uint64_t remaining;      /* end - next                           */
    uint64_t allocations;    /* successful malloc/calloc/realloc     */
    uint64_t failures;       /* requests answered with NULL          */
    uint64_t frees;          /* free() calls with a non-NULL pointer */
};

/* Places the heap in the first available memory-map region that holds all
 * HEAP_SIZE bytes above the kernel, the modules and the boot information and
 * inside the identity map (paging.h). Returns 0, or -1 (and prints why) if none does. */
int heap_init(const struct mb2_info *info);

/* Returns a 16-byte aligned block of at least size bytes, or NULL if the heap
 * is not initialised, is exhausted, or size + header would wrap. */
void *malloc(size_t size);

/* Returns a zeroed block of count * size bytes, or NULL if the product
 * overflows size_t or the heap cannot hold it. */
void *calloc(size_t count, size_t size);

/* Returns a block of size bytes holding the old contents (up to the smaller
 * size), or NULL on failure (the old block is then untouched). realloc(NULL, n)
 * is malloc(n); realloc(p, 0) frees p and returns NULL. */
void *realloc(void *pointer, size_t size);

/* Gives the block back if it is the most recent one; otherwise only counts it. */
void free(void *pointer);

void heap_stats(struct heap_stats *out);

#endif
