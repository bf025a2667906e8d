/* Multiboot2 header with a framebuffer tag (FB_WIDTH x FB_HEIGHT x FB_DEPTH, given with -D;
 * 0 means "no preference"), with -DCONSOLE_FLAGS=n a console flags tag
 * before it, and a 32-bit entry with a stack. */
#define MB2_MAGIC 0xE85250D6
#define MB2_ARCH_I386 0
#define TAG_FRAMEBUFFER 5
#define TAG_REQUIRED 0
#define TAG_CONSOLE_FLAGS 4
    .section .multiboot2, "a"
    .align 8
header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long header_end - header
    .long -(MB2_MAGIC + MB2_ARCH_I386 + (header_end - header))
#ifdef CONSOLE_FLAGS
    .short TAG_CONSOLE_FLAGS, TAG_REQUIRED
    .long 12
    .long CONSOLE_FLAGS
    .long 0                      /* pad to the next 8-byte boundary */
#endif
    .short TAG_FRAMEBUFFER, TAG_REQUIRED
    .long 20
    .long FB_WIDTH, FB_HEIGHT, FB_DEPTH
    .long 0                      /* pad to the next 8-byte boundary */
    .short 0, 0
    .long 8
header_end:

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    push %ebx
    push %eax
    call probe_main
1:  hlt
    jmp 1b

    .bss
    .align 16
    .space 8192
stack_top:
