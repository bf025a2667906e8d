/* Multiboot2 structures and constants (Multiboot2 specification 2.0, sections 3.1 and 3.6).
 * Shared by the assembly header and the C parser, so only #defines before the C part. */
#ifndef BOOT_MULTIBOOT2_H
#define BOOT_MULTIBOOT2_H

#define MB2_HEADER_MAGIC                    0xE85250D6  /* in the OS image header        */
#define MB2_BOOTLOADER_MAGIC                0x36D76289  /* in EAX at the kernel's entry  */
#define MB2_ARCHITECTURE_I386               0

#define MB2_HEADER_TAG_END                  0
#define MB2_HEADER_TAG_INFORMATION_REQUEST  1

#define MB2_TAG_TYPE_END                    0
#define MB2_TAG_TYPE_CMDLINE                1
#define MB2_TAG_TYPE_BOOT_LOADER_NAME       2
#define MB2_TAG_TYPE_MODULE                 3
#define MB2_TAG_TYPE_BASIC_MEMINFO          4
#define MB2_TAG_TYPE_BOOTDEV                5
#define MB2_TAG_TYPE_MMAP                   6
#define MB2_TAG_TYPE_FRAMEBUFFER            8
#define MB2_TAG_TYPE_ELF_SECTIONS           9
#define MB2_TAG_TYPE_LOAD_BASE_ADDR         21

#define MB2_MEMORY_AVAILABLE                1
#define MB2_MEMORY_RESERVED                 2
#define MB2_MEMORY_ACPI_RECLAIMABLE         3
#define MB2_MEMORY_NVS                      4
#define MB2_MEMORY_BADRAM                   5

#define MB2_TAG_ALIGN                       8

#ifndef __ASSEMBLER__
#include <stdint.h>

struct mb2_info {                /* the boot information's fixed part */
    uint32_t total_size;         /* bytes, including this header and the end tag */
    uint32_t reserved;
};

struct mb2_tag {                 /* every tag starts with these */
    uint32_t type;
    uint32_t size;               /* bytes, without the padding to 8 */
};

struct mb2_tag_string {          /* cmdline (1), boot loader name (2) */
    uint32_t type;
    uint32_t size;
    char string[];               /* zero-terminated UTF-8 */
};

struct mb2_tag_module {          /* module (3) */
    uint32_t type;
    uint32_t size;
    uint32_t mod_start;          /* physical address of the first byte */
    uint32_t mod_end;            /* physical address one past the last byte */
    char cmdline[];
};

struct mb2_tag_basic_meminfo {   /* basic memory information (4) */
    uint32_t type;
    uint32_t size;
    uint32_t mem_lower;          /* KiB of lower memory, from 0 */
    uint32_t mem_upper;          /* KiB of upper memory, from 1 MiB */
};

struct mb2_mmap_entry {
    uint64_t base_addr;
    uint64_t length;
    uint32_t type;               /* MB2_MEMORY_* */
    uint32_t reserved;
};

struct mb2_tag_mmap {            /* memory map (6) */
    uint32_t type;
    uint32_t size;
    uint32_t entry_size;         /* a multiple of 8; may grow in later versions */
    uint32_t entry_version;      /* 0 */
    struct mb2_mmap_entry entries[];
};

struct mb2_tag_load_base_addr {  /* image load base physical address (21) */
    uint32_t type;
    uint32_t size;
    uint32_t load_base_addr;
};

/* Returns the first tag of the boot information at info. */
const struct mb2_tag *mb2_first_tag(const struct mb2_info *info);

/* Returns the tag after tag, or 0 if tag is the end tag or the next one
 * would lie past the boot information's total_size. */
const struct mb2_tag *mb2_next_tag(const struct mb2_info *info, const struct mb2_tag *tag);

/* Returns the first tag of the given type, or 0 if there is none. */
const struct mb2_tag *mb2_find_tag(const struct mb2_info *info, uint32_t type);

/* Finds the module whose command line is name (or starts with "name ") and
 * sets *data and *size. Returns 0, or -1 if there is none. */
int mb2_find_module(const struct mb2_info *info, const char *name, const void **data, uint64_t *size);

#endif /* __ASSEMBLER__ */
#endif /* BOOT_MULTIBOOT2_H */
