/* Multiboot1 header: page-aligned modules (bit 0) and memory information (bit 1). */
#define MB1_MAGIC 0x1BADB002
#define MB1_FLAGS 0x00000003
    .section .multiboot2, "a"
    .align 4
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)

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
