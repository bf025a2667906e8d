/* Cutting the boot identity map down to RAM (Intel SDM vol. 3A, 4.5; 4.10.4:
 * reloading CR3 flushes the unmapped entries from the TLB). */
#include "kernel_lib/memory/paging.h"

#define PTE_PRESENT 1ull

extern uint64_t boot_pd[];                  /* (4 * 512) entries, boot/entry.S */

static uint64_t map_end = BOOT_MAP_END;

static uint64_t ram_end(const struct mb2_info *info)
{
    const struct mb2_tag_mmap *map = (const struct mb2_tag_mmap *)mb2_find_tag(info, MB2_TAG_TYPE_MMAP);
    uint64_t end = 0;

    if (map == 0 || map->entry_size < sizeof(struct mb2_mmap_entry))
        return BOOT_MAP_END;                /* no memory map: keep what the boot code mapped */
    for (const uint8_t *entry = (const uint8_t *)map->entries;
         entry + map->entry_size <= (const uint8_t *)map + map->size; entry += map->entry_size) {
        const struct mb2_mmap_entry *region = (const struct mb2_mmap_entry *)entry;
        if (region->type == MB2_MEMORY_AVAILABLE && region->base_addr + region->length > end)
            end = region->base_addr + region->length;
    }
    return end;
}

uint64_t paging_map_ram(const struct mb2_info *info, uint64_t limit)
{
    uint64_t end = ram_end(info), cr3;

    if (limit && limit < end)
        end = limit;
    end = (end + HUGE_PAGE_BYTES - 1) & ~(HUGE_PAGE_BYTES - 1);
    if (end > BOOT_MAP_END)
        end = BOOT_MAP_END;
    for (uint64_t page = end / HUGE_PAGE_BYTES; page < BOOT_MAP_END / HUGE_PAGE_BYTES; page++)
        boot_pd[page] &= ~PTE_PRESENT;
    __asm__ volatile("mov %%cr3, %0\n\tmov %0, %%cr3" : "=r"(cr3) : : "memory");
    map_end = end;
    return end;
}

uint64_t identity_map_end(void)
{
    return map_end;
}
