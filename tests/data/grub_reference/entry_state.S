/* Multiboot2 header (no tags) or, with -DMULTIBOOT1, a Multiboot 1 header; the entry saves
 * every register the loader set before touching any, then calls probe_main(saved). */
#ifdef MULTIBOOT1
    .section .multiboot2, "a"
    .align 4
    .long 0x1BADB002, 0x00000003, -(0x1BADB002 + 0x00000003)
#else
    .section .multiboot2, "a"
    .align 8
header:
    .long 0xE85250D6, 0, header_end - header, -(0xE85250D6 + (header_end - header))
    .short 0, 0
    .long 8
header_end:
#endif
    .text
    .globl _start
_start:
    mov %eax, saved + 0
    mov %ebx, saved + 4
    mov %esp, saved + 8
    pushf
    popl saved + 12
    mov %cs, saved + 16
    mov %ds, saved + 20
    mov %es, saved + 24
    mov %ss, saved + 28
    mov %fs, saved + 32
    mov %gs, saved + 36
    sgdt saved + 40
    sidt saved + 48
    mov %cr0, %eax
    mov %eax, saved + 56
    mov %cr4, %eax
    mov %eax, saved + 60
    str saved + 64
    sldt saved + 68
    mov $stack_top, %esp
    push $saved
    call probe_main
1:  hlt
    jmp 1b

    .bss
    .align 16
    .globl saved
saved:
    .space 72
    .space 8192
stack_top:
