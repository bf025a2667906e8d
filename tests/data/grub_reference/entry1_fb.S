/* Multiboot 1 header asking for page-aligned modules (bit 0), memory information (bit 1)
 * and a video mode (bit 2: MODE_TYPE, FB_WIDTH x FB_HEIGHT x FB_DEPTH, given with -D; 0 = no preference). */
#define MB1_MAGIC 0x1BADB002
#define MB1_FLAGS 0x00000007
#ifndef MODE_TYPE
#define MODE_TYPE 0                  /* 0: linear graphics, 1: EGA text */
#endif
    .section .multiboot2, "a"
    .align 4
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)
    .long 0, 0, 0, 0, 0          /* address fields: unused without flag bit 16 */
    .long MODE_TYPE, FB_WIDTH, FB_HEIGHT, FB_DEPTH

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
