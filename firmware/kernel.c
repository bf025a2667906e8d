/* Reference unikernel: kernel_main prints what the boot loader handed over,
 * then leaves through the debug-exit port. The simulator's boot tests read
 * this printout back, so its line formats are part of the contract:
 *
 *   cmdline: <text>
 *   boot loader: <text>
 *   meminfo: lower=<KiB> upper=<KiB>
 *   mmap: base=0x... length=0x... type=<n>
 *   module: start=0x... end=0x... crc32=0x... string=<text>
 *   load base: 0x...
 *   boot info: <n> tags, <n> bytes
 */
#include <stdint.h>
#include "boot/multiboot2.h"
#include "kernel_lib/cpu/debug_exit.h"
#include "kernel_lib/io/serial.h"
#include "kernel_lib/util/crc32.h"

#define ADDRESS_HEX_DIGITS 16
#define CRC_HEX_DIGITS     8

static void print_string_tag(const char *label, const struct mb2_tag *tag)
{
    serial_write(label);
    serial_write(((const struct mb2_tag_string *)tag)->string);
    serial_write("\n");
}

static void print_meminfo(const struct mb2_tag_basic_meminfo *info)
{
    serial_write("meminfo: lower=");
    serial_put_uint(info->mem_lower);
    serial_write(" upper=");
    serial_put_uint(info->mem_upper);
    serial_write("\n");
}

static void print_mmap(const struct mb2_tag_mmap *map)
{
    const uint8_t *entry = (const uint8_t *)map->entries;
    const uint8_t *end = (const uint8_t *)map + map->size;

    if (map->entry_size < sizeof(struct mb2_mmap_entry)) {
        serial_write("mmap: entry_size too small\n");
        return;
    }
    for (; entry + map->entry_size <= end; entry += map->entry_size) {
        const struct mb2_mmap_entry *e = (const struct mb2_mmap_entry *)entry;
        serial_write("mmap: base=");
        serial_put_hex(e->base_addr, ADDRESS_HEX_DIGITS);
        serial_write(" length=");
        serial_put_hex(e->length, ADDRESS_HEX_DIGITS);
        serial_write(" type=");
        serial_put_uint(e->type);
        serial_write("\n");
    }
}

static void print_module(const struct mb2_tag_module *module)
{
    uint64_t length = module->mod_end - module->mod_start;

    serial_write("module: start=");
    serial_put_hex(module->mod_start, ADDRESS_HEX_DIGITS);
    serial_write(" end=");
    serial_put_hex(module->mod_end, ADDRESS_HEX_DIGITS);
    serial_write(" crc32=");
    serial_put_hex(crc32((const void *)(uintptr_t)module->mod_start, length), CRC_HEX_DIGITS);
    serial_write(" string=");
    serial_write(module->cmdline);
    serial_write("\n");
}

static void print_tag(const struct mb2_tag *tag)
{
    switch (tag->type) {
    case MB2_TAG_TYPE_CMDLINE:
        print_string_tag("cmdline: ", tag);
        break;
    case MB2_TAG_TYPE_BOOT_LOADER_NAME:
        print_string_tag("boot loader: ", tag);
        break;
    case MB2_TAG_TYPE_BASIC_MEMINFO:
        print_meminfo((const struct mb2_tag_basic_meminfo *)tag);
        break;
    case MB2_TAG_TYPE_MMAP:
        print_mmap((const struct mb2_tag_mmap *)tag);
        break;
    case MB2_TAG_TYPE_MODULE:
        print_module((const struct mb2_tag_module *)tag);
        break;
    case MB2_TAG_TYPE_LOAD_BASE_ADDR:
        serial_write("load base: ");
        serial_put_hex(((const struct mb2_tag_load_base_addr *)tag)->load_base_addr,
                       ADDRESS_HEX_DIGITS);
        serial_write("\n");
        break;
    default:
        break;
    }
}

/* Prints every tag of the boot information. Returns the number of tags
 * before the end tag. */
static int print_boot_info(const struct mb2_info *info)
{
    int tags = 0;

    for (const struct mb2_tag *tag = mb2_first_tag(info);
         tag && tag->type != MB2_TAG_TYPE_END; tag = mb2_next_tag(info, tag)) {
        print_tag(tag);
        tags++;
    }
    return tags;
}

int kernel_main(uint32_t magic, uint32_t boot_info_address)
{
    const struct mb2_info *info = (const struct mb2_info *)(uintptr_t)boot_info_address;
    int tags;

    serial_init();
    serial_write("unikernel_sim reference firmware\n");
    if (magic != MB2_BOOTLOADER_MAGIC || boot_info_address == 0) {
        serial_write("no Multiboot2 boot information\n");
        return EXIT_BAD_BOOT_INFO;
    }
    tags = print_boot_info(info);
    serial_write("boot info: ");
    serial_put_uint((uint64_t)tags);
    serial_write(" tags, ");
    serial_put_uint(info->total_size);
    serial_write(" bytes\n");
    return EXIT_OK;
}
