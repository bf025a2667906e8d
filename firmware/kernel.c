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
 *   timer: <n> ticks at <hz> Hz
 *   tsc: <hz> Hz
 *   heap: 0x<start>..0x<end>
 *   keyboard: <echoed text>
 *
 * The command line's mem=<MiB> limits the RAM the firmware maps and uses (as
 * Linux's mem=); all of RAM otherwise. Its job= selects what runs after start-up: "demo" (the
 * default: timer, TSC and keyboard), "idle" (stop in kernel_ready() and wait
 * for interrupts: the state the simulator's guest-call tests start from),
 * "llama" (TinyLlama generation from the "model" and "tokenizer" modules) and
 * "llama-ready" (create the model, then idle like "idle"), "chat" (a GGUF
 * instruct model answering the "user" module, tinyllama/chat.h) and
 * "chat-ready" (create it, then idle).
 */
#include <stdint.h>
#include "boot/multiboot2.h"
#include "kernel_lib/cpu/debug_exit.h"
#include "kernel_lib/cpu/interrupts.h"
#include "kernel_lib/cpu/pic.h"
#include "kernel_lib/cpu/pit.h"
#include "kernel_lib/cpu/tsc.h"
#include "kernel_lib/io/console.h"
#include "kernel_lib/io/keyboard.h"
#include "kernel_lib/memory/malloc_bump.h"
#include "kernel_lib/memory/paging.h"
#include "kernel_lib/libc/string.h"
#include "kernel_lib/util/cmdline.h"
#include "kernel_lib/util/crc32.h"
#include "tinyllama/chat.h"
#include "tinyllama/job.h"

#define ADDRESS_HEX_DIGITS 16
#define CRC_HEX_DIGITS     8
#define TIMER_HZ           100
#define TICKS_TO_WAIT      10      /* 100 ms of timer interrupts */
#define KEYBOARD_IDLE_TICKS 20     /* stop echoing after 200 ms without a key */
#define JOB_NAME_MAX        32
#define MIB                 (1024ull * 1024)

static void print_string_tag(const char *label, const struct mb2_tag *tag)
{
    console_write(label);
    console_write(((const struct mb2_tag_string *)tag)->string);
    console_write("\n");
}

static void print_meminfo(const struct mb2_tag_basic_meminfo *info)
{
    console_write("meminfo: lower=");
    console_put_uint(info->mem_lower);
    console_write(" upper=");
    console_put_uint(info->mem_upper);
    console_write("\n");
}

static void print_mmap(const struct mb2_tag_mmap *map)
{
    const uint8_t *entry = (const uint8_t *)map->entries;
    const uint8_t *end = (const uint8_t *)map + map->size;

    if (map->entry_size < sizeof(struct mb2_mmap_entry)) {
        console_write("mmap: entry_size too small\n");
        return;
    }
    for (; entry + map->entry_size <= end; entry += map->entry_size) {
        const struct mb2_mmap_entry *e = (const struct mb2_mmap_entry *)entry;
        console_write("mmap: base=");
        console_put_hex(e->base_addr, ADDRESS_HEX_DIGITS);
        console_write(" length=");
        console_put_hex(e->length, ADDRESS_HEX_DIGITS);
        console_write(" type=");
        console_put_uint(e->type);
        console_write("\n");
    }
}

static void print_module(const struct mb2_tag_module *module)
{
    uint64_t length = module->mod_end - module->mod_start;

    console_write("module: start=");
    console_put_hex(module->mod_start, ADDRESS_HEX_DIGITS);
    console_write(" end=");
    console_put_hex(module->mod_end, ADDRESS_HEX_DIGITS);
    console_write(" crc32=");
    console_put_hex(crc32((const void *)(uintptr_t)module->mod_start, length), CRC_HEX_DIGITS);
    console_write(" string=");
    console_write(module->cmdline);
    console_write("\n");
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
        console_write("load base: ");
        console_put_hex(((const struct mb2_tag_load_base_addr *)tag)->load_base_addr,
                       ADDRESS_HEX_DIGITS);
        console_write("\n");
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

/* Brings up the PIC, the timer and the keyboard and enables interrupts.
 * Returns 0, or an EXIT_* code naming what failed. */
static int platform_init(void)
{
    idt_init();
    pic_init(IRQ_BASE_VECTOR, IRQ_BASE_VECTOR + 8);
    if (pit_init(TIMER_HZ) != 0)
        return EXIT_PLATFORM;
    if (keyboard_init() != 0)
        console_write("keyboard: no controller\n");
    interrupts_enable();
    return 0;
}

static void report_timer(void)
{
    while (pit_ticks() < TICKS_TO_WAIT)
        cpu_wait_for_interrupt();
    console_write("timer: ");
    console_put_uint(pit_ticks());
    console_write(" ticks at ");
    console_put_uint(TIMER_HZ);
    console_write(" Hz\n");
}

static void report_tsc(void)
{
    console_write("tsc: ");
    console_put_uint(tsc_calibrate());
    console_write(" Hz\n");
}

/* Echoes typed characters until the keyboard has been idle for a while. */
static void echo_keyboard(void)
{
    uint64_t idle_since = pit_ticks();

    console_write("keyboard: ");
    while (pit_ticks() - idle_since < KEYBOARD_IDLE_TICKS) {
        int c = keyboard_getc();
        if (c < 0) {
            cpu_wait_for_interrupt();
            continue;
        }
        console_putc((char)c);
        idle_since = pit_ticks();
    }
    console_write("\n");
}

/* The simulator stops here (a breakpoint on this symbol) to snapshot a booted
 * kernel; on a real machine it returns at once. */
__attribute__((noinline)) void kernel_ready(void)
{
    __asm__ volatile("" ::: "memory");
}

static void idle_forever(void)
{
    kernel_ready();
    for (;;)
        cpu_wait_for_interrupt();
}

static const char *boot_cmdline(const struct mb2_info *info)
{
    const struct mb2_tag *tag = mb2_find_tag(info, MB2_TAG_TYPE_CMDLINE);
    return tag ? ((const struct mb2_tag_string *)tag)->string : "";
}

static void report_heap(void)
{
    struct heap_stats stats;

    heap_stats(&stats);
    console_write("heap: ");
    console_put_hex(stats.start, 1);
    console_write("..");
    console_put_hex(stats.end, 1);
    console_write("\n");
}

int kernel_main(uint32_t magic, uint32_t boot_info_address)
{
    const struct mb2_info *info = (const struct mb2_info *)(uintptr_t)boot_info_address;
    char job[JOB_NAME_MAX] = "demo";
    int tags, status;

    console_init();
    console_write("unikernel_sim reference firmware\n");
    if (magic != MB2_BOOTLOADER_MAGIC || boot_info_address == 0) {
        console_write("no Multiboot2 boot information\n");
        return EXIT_BAD_BOOT_INFO;
    }
    paging_map_ram(info, cmdline_uint(boot_cmdline(info), "mem", 0) * MIB);   /* mem=<MiB>: use no more */
    tags = print_boot_info(info);
    console_write("boot info: ");
    console_put_uint((uint64_t)tags);
    console_write(" tags, ");
    console_put_uint(info->total_size);
    console_write(" bytes\n");
    cmdline_get(boot_cmdline(info), "job", job, sizeof(job));

    if (heap_init(info) != 0)
        return EXIT_NO_HEAP;
    report_heap();
    status = platform_init();
    if (status != 0)
        return status;
    if (strcmp(job, "idle") == 0)
        idle_forever();
    if (strcmp(job, "llama") == 0)
        return tinyllama_job(info, boot_cmdline(info));
    if (strcmp(job, "chat") == 0)
        return chat_job(info, boot_cmdline(info));
    if (strcmp(job, "chat-ready") == 0) {
        status = chat_ready_job(info, boot_cmdline(info));
        if (status != 0)
            return status;
        idle_forever();
    }
    if (strcmp(job, "llama-ready") == 0) {
        status = tinyllama_ready_job(info, boot_cmdline(info));
        if (status != 0)
            return status;
        idle_forever();
    }
    report_timer();
    report_tsc();
    echo_keyboard();
    return EXIT_OK;
}
