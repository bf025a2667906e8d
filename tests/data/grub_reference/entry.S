/* Multiboot2 header (no tags but the end tag) and a 32-bit entry with a stack. */
#define MB2_MAGIC 0xE85250D6
#define MB2_ARCH_I386 0
    .section .multiboot2, "a"
    .align 8
header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long header_end - header
    .long -(MB2_MAGIC + MB2_ARCH_I386 + (header_end - header))
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
