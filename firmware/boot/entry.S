/* 32-bit Multiboot2 entry -> 64-bit long mode -> kernel_main.
 *
 * Machine state at _start (Multiboot2 specification, section 3.3): 32-bit
 * protected mode, paging off, flat segments, IF clear, EAX = bootloader magic,
 * EBX = physical address of the boot information, ESP undefined.
 *
 * Steps: check the magic; identity-map 0-4 GiB with 2 MiB pages (Intel SDM
 * vol. 3A, 4.5: PML4 -> PDPT -> four PDs with PS=1; kernel_lib/memory/paging.c
 * then unmaps what is not RAM); CR4.PAE, EFER.LME, CR0.PG;
 * load a 64-bit GDT and far-jump into the 64-bit code segment; enable SSE
 * (SDM vol. 3A, 13.1.3); call kernel_main(magic, boot_info) on a 64 KiB stack. */
#include "boot/multiboot2.h"
#include "kernel_lib/cpu/debug_exit_codes.h"

#define BOOT_STACK_SIZE     (64 * 1024)
#define PAGE_SIZE           4096
#define HUGE_PAGE_SIZE      (2 * 1024 * 1024)
#define BOOT_MAP_PDS        4                   /* 4 x 512 x 2 MiB: the 32-bit address space */
#define BOOT_MAP_PAGES      (BOOT_MAP_PDS * 512)

#define PTE_PRESENT         (1 << 0)
#define PTE_WRITABLE        (1 << 1)
#define PTE_HUGE            (1 << 7)            /* PS: a 2 MiB page in a PD entry */

#define CR0_PE              (1 << 0)
#define CR0_MP              (1 << 1)
#define CR0_EM              (1 << 2)
#define CR0_PG              (1 << 31)
#define CR4_PAE             (1 << 5)
#define CR4_OSFXSR          (1 << 9)
#define CR4_OSXMMEXCPT      (1 << 10)
#define MSR_EFER            0xC0000080
#define EFER_LME            (1 << 8)

#define GDT_CODE64_SELECTOR 0x08
#define GDT_DATA_SELECTOR   0x10

#define COM1                0x3F8
#define DEBUG_EXIT_PORT     0xF4

    .section .bss.page_tables, "aw", @nobits
    .balign PAGE_SIZE
    .global boot_pml4, boot_pd
boot_pml4:  .skip PAGE_SIZE                     /* (512) PML4 entries, 1 used    */
boot_pdpt:  .skip PAGE_SIZE                     /* (512) PDPT entries, 4 used    */
boot_pd:    .skip BOOT_MAP_PDS * PAGE_SIZE      /* (4, 512) PD entries: 2 MiB pages */

    .section .bss
    .balign 16
    .global boot_stack_bottom, boot_stack_top
boot_stack_bottom:
    .skip BOOT_STACK_SIZE
boot_stack_top:

    .section .rodata
    .balign 8
gdt64:
    .quad 0                                     /* null descriptor               */
    .quad 0x00AF9A000000FFFF                    /* 0x08: code, 64-bit (L=1), DPL 0 */
    .quad 0x00CF92000000FFFF                    /* 0x10: data, writable          */
gdt64_end:
gdt64_pointer:
    .short gdt64_end - gdt64 - 1
    .quad gdt64
bad_magic_message:
    .asciz "firmware: not started by a Multiboot2 loader (bad EAX magic)\n"

    .section .text.boot, "ax"
    .code32
    .global _start
    .type _start, @function
_start:
    cli
    mov $boot_stack_top, %esp
    cmp $MB2_BOOTLOADER_MAGIC, %eax
    jne bad_magic
    mov %eax, %edi                              /* kept for kernel_main          */
    mov %ebx, %esi

    /* PML4[0] -> PDPT, PDPT[j] -> PD j, PD[i] -> 2 MiB page i (the PDs are contiguous) */
    mov $boot_pdpt, %eax
    or $(PTE_PRESENT | PTE_WRITABLE), %eax
    mov %eax, boot_pml4
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $12, %eax
    add $boot_pd, %eax
    or $(PTE_PRESENT | PTE_WRITABLE), %eax
    mov %eax, boot_pdpt(, %ecx, 8)
    inc %ecx
    cmp $BOOT_MAP_PDS, %ecx
    jne 2b
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $(PTE_PRESENT | PTE_WRITABLE | PTE_HUGE), %eax
    mov %eax, boot_pd(, %ecx, 8)
    movl $0, boot_pd + 4(, %ecx, 8)
    inc %ecx
    cmp $BOOT_MAP_PAGES, %ecx
    jne 1b

    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $CR4_PAE, %eax
    mov %eax, %cr4
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    wrmsr
    mov %cr0, %eax
    or $(CR0_PG | CR0_PE), %eax
    mov %eax, %cr0

    lgdt gdt64_pointer
    ljmp $GDT_CODE64_SELECTOR, $long_mode_entry

bad_magic:
    mov $bad_magic_message, %esi
2:  lodsb
    test %al, %al
    jz 3f
    mov $COM1, %dx
    out %al, %dx
    jmp 2b
3:  mov $EXIT_BAD_BOOT_MAGIC, %al
    mov $DEBUG_EXIT_PORT, %dx
    out %al, %dx
4:  hlt
    jmp 4b
    .size _start, . - _start

    .cfi_sections .debug_frame                  /* unwind info for debuggers only: nothing loaded */
    .code64
    .type long_mode_entry, @function
long_mode_entry:
    .cfi_startproc                              /* for debuggers: the outermost frame, */
    .cfi_undefined rip                          /* nothing to unwind to from here      */
    mov $GDT_DATA_SELECTOR, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs

    mov %cr0, %rax                              /* SSE: CR0.MP=1, CR0.EM=0       */
    and $~CR0_EM, %rax
    or $CR0_MP, %rax
    mov %rax, %cr0
    mov %cr4, %rax                              /* CR4.OSFXSR, CR4.OSXMMEXCPT    */
    or $(CR4_OSFXSR | CR4_OSXMMEXCPT), %rax
    mov %rax, %cr4
    fninit

    mov $boot_stack_top, %rsp
    xor %ebp, %ebp                              /* ends frame-pointer backtraces */
    /* edi = magic, esi = boot information (upper halves are zero after 32-bit moves) */
    call kernel_main
    mov %eax, %edi
    call debug_exit
5:  cli
    hlt
    jmp 5b
    .cfi_endproc
    .size long_mode_entry, . - long_mode_entry
