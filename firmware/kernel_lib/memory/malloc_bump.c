/* Bump allocator (see malloc_bump.h for the exact semantics). */
#include "kernel_lib/memory/malloc_bump.h"
#include "kernel_lib/memory/paging.h"
#include "kernel_lib/io/console.h"
#include "kernel_lib/libc/string.h"

#define BLOCK_MAGIC   0x4b4f4c42504d5542ull      /* "BUMPBLOK" */

struct block_header {
    uint64_t size;            /* payload bytes, a multiple of HEAP_ALIGN */
    uint64_t magic;
};

extern char __kernel_end[];

/* Read by the host's heap inspector through these symbols. */
uint64_t heap_start, heap_end, heap_next;
uint64_t heap_allocations, heap_failures, heap_frees;

static uint64_t align_up(uint64_t value, uint64_t alignment)
{
    return (value + alignment - 1) & ~(alignment - 1);
}

/* The first address above everything the boot loader handed over. */
static uint64_t lowest_free_address(const struct mb2_info *info)
{
    uint64_t lowest = (uint64_t)(uintptr_t)__kernel_end;
    uint64_t info_end = (uint64_t)(uintptr_t)info + info->total_size;

    if (info_end > lowest)
        lowest = info_end;
    for (const struct mb2_tag *tag = mb2_first_tag(info); tag && tag->type != MB2_TAG_TYPE_END;
         tag = mb2_next_tag(info, tag)) {
        if (tag->type == MB2_TAG_TYPE_MODULE) {
            uint64_t module_end = ((const struct mb2_tag_module *)tag)->mod_end;
            if (module_end > lowest)
                lowest = module_end;
        }
    }
    return lowest;
}

static void *fail(void)
{
    heap_failures++;
    return 0;
}

#ifdef MALLOC_BUG_NO_BOUNDS_CHECK
/* Build variant for the regression suite only: the allocator as it was when
 * malloc(5632) crashed. The heap goes right after the modules with no check
 * against the identity map, and malloc never checks the bound. */
int heap_init(const struct mb2_info *info)
{
    heap_start = align_up(lowest_free_address(info), HEAP_ALIGN);
    heap_end = heap_start + HEAP_SIZE;
    heap_next = heap_start;
    return 0;
}

void *malloc(size_t size)
{
    struct block_header *header = (struct block_header *)(uintptr_t)heap_next;
    uint64_t payload = align_up(size ? size : 1, HEAP_ALIGN);

    header->size = payload;
    header->magic = BLOCK_MAGIC;
    heap_next += HEAP_HEADER_SIZE + payload;
    heap_allocations++;
    return header + 1;
}
#else
int heap_init(const struct mb2_info *info)
{
    const struct mb2_tag_mmap *map = (const struct mb2_tag_mmap *)mb2_find_tag(info, MB2_TAG_TYPE_MMAP);
    uint64_t lowest = align_up(lowest_free_address(info), HEAP_ALIGN);

    if (map == 0 || map->entry_size < sizeof(struct mb2_mmap_entry)) {
        console_write("heap: no memory map from the boot loader\n");
        return -1;
    }
    for (const uint8_t *entry = (const uint8_t *)map->entries;
         entry + map->entry_size <= (const uint8_t *)map + map->size; entry += map->entry_size) {
        const struct mb2_mmap_entry *region = (const struct mb2_mmap_entry *)entry;
        uint64_t start = align_up(region->base_addr > lowest ? region->base_addr : lowest, HEAP_ALIGN);
        uint64_t region_end = region->base_addr + region->length;

        if (region->type != MB2_MEMORY_AVAILABLE || start >= region_end)
            continue;
        if (region_end - start >= HEAP_SIZE && start + HEAP_SIZE <= identity_map_end()) {
            heap_start = start;
            heap_end = start + HEAP_SIZE;
            heap_next = start;
            return 0;
        }
    }
    console_write("heap: no available memory region holds 64 MiB above the kernel and modules inside the ");
    console_put_uint(identity_map_end() >> 20);
    console_write(" MiB identity map\n");
    return -1;
}

void *malloc(size_t size)
{
    struct block_header *header;
    uint64_t payload;

    if (heap_end == 0)
        return fail();
    if (size > HEAP_SIZE)                       /* also rejects sizes that would wrap */
        return fail();
    payload = align_up(size ? size : 1, HEAP_ALIGN);
    if (payload + HEAP_HEADER_SIZE > heap_end - heap_next)
        return fail();
    header = (struct block_header *)(uintptr_t)heap_next;
    header->size = payload;
    header->magic = BLOCK_MAGIC;
    heap_next += HEAP_HEADER_SIZE + payload;
    heap_allocations++;
    return header + 1;
}
#endif /* MALLOC_BUG_NO_BOUNDS_CHECK */

void *calloc(size_t count, size_t size)
{
    size_t total;
    void *block;

    if (__builtin_mul_overflow(count, size, &total))
        return fail();
    block = malloc(total);
    if (block)
        memset(block, 0, total);
    return block;
}

static struct block_header *header_of(void *pointer)
{
    return (struct block_header *)pointer - 1;
}

static int is_last_block(const struct block_header *header)
{
    return (uint64_t)(uintptr_t)(header + 1) + header->size == heap_next;
}

void free(void *pointer)
{
    struct block_header *header;

    if (pointer == 0)
        return;
    heap_frees++;
    header = header_of(pointer);
    if (header->magic == BLOCK_MAGIC && is_last_block(header)) {
        header->magic = 0;
        heap_next = (uint64_t)(uintptr_t)header;
    }
}

void *realloc(void *pointer, size_t size)
{
    struct block_header *header;
    uint64_t payload;
    void *moved;

    if (pointer == 0)
        return malloc(size);
    if (size == 0) {
        free(pointer);
        return 0;
    }
    header = header_of(pointer);
    if (size > HEAP_SIZE)
        return fail();
    payload = align_up(size, HEAP_ALIGN);
    if (is_last_block(header) && payload <= heap_end - (uint64_t)(uintptr_t)pointer) {
        heap_next = (uint64_t)(uintptr_t)pointer + payload;     /* grow or shrink in place */
        header->size = payload;
        heap_allocations++;
        return pointer;
    }
    moved = malloc(size);
    if (moved == 0)
        return 0;
    memcpy(moved, pointer, header->size < payload ? header->size : payload);
    free(pointer);
    return moved;
}

void heap_stats(struct heap_stats *out)
{
    out->start = heap_start;
    out->end = heap_end;
    out->next = heap_next;
    out->used = heap_next - heap_start;
    out->remaining = heap_end - heap_next;
    out->allocations = heap_allocations;
    out->failures = heap_failures;
    out->frees = heap_frees;
}
