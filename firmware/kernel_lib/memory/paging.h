/* The identity map boot/entry.S builds (0-4 GiB in 2 MiB pages), cut down to
 * the RAM the machine has: an access past RAM then faults (a #PF the simulator
 * reports with its page walk) instead of reaching nothing. */
#ifndef KERNEL_LIB_MEMORY_PAGING_H
#define KERNEL_LIB_MEMORY_PAGING_H
#include <stdint.h>
#include "boot/multiboot2.h"

#define HUGE_PAGE_BYTES   (2ull * 1024 * 1024)
#define BOOT_MAP_END      (4ull * 1024 * 1024 * 1024)     /* what boot/entry.S maps */

/* Keeps the 2 MiB pages up to the end of the highest available memory-map
 * region (at most limit bytes, 0: no limit; Linux's mem=) and unmaps the rest.
 * Returns the end of the identity map. */
uint64_t paging_map_ram(const struct mb2_info *info, uint64_t limit);

/* The end of the identity map (BOOT_MAP_END before paging_map_ram). */
uint64_t identity_map_end(void);

#endif
