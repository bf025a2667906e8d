/* Interrupt entry stubs: one per vector, then a common path that saves every
 * general register and the SSE state (handlers are C code that may use SSE),
 * calls trap_dispatch(frame) and returns with iretq.
 *
 * Stack at isr_common (see struct trap_frame): the CPU aligned RSP to 16 and
 * pushed 5 words (6 with an error code); the stub pushed a 0 error code where
 * the CPU does not, then the vector, so 7 words; 15 registers make 22 words:
 * still 16-byte aligned for the FXSAVE area and the call. */
#define FXSAVE_AREA 512

    .section .text
    .code64

.macro ISR_NO_ERROR vector
    .global isr_\vector
isr_\vector:
    pushq $0
    pushq $\vector
    jmp isr_common
.endm

.macro ISR_ERROR vector
    .global isr_\vector
isr_\vector:
    pushq $\vector
    jmp isr_common
.endm

ISR_NO_ERROR 0
ISR_NO_ERROR 1
ISR_NO_ERROR 2
ISR_NO_ERROR 3
ISR_NO_ERROR 4
ISR_NO_ERROR 5
ISR_NO_ERROR 6
ISR_NO_ERROR 7
ISR_ERROR    8
ISR_NO_ERROR 9
ISR_ERROR    10
ISR_ERROR    11
ISR_ERROR    12
ISR_ERROR    13
ISR_ERROR    14
ISR_NO_ERROR 15
ISR_NO_ERROR 16
ISR_ERROR    17
ISR_NO_ERROR 18
ISR_NO_ERROR 19
ISR_NO_ERROR 20
ISR_ERROR    21
ISR_NO_ERROR 22
ISR_NO_ERROR 23
ISR_NO_ERROR 24
ISR_NO_ERROR 25
ISR_NO_ERROR 26
ISR_NO_ERROR 27
ISR_NO_ERROR 28
ISR_NO_ERROR 29
ISR_NO_ERROR 30
ISR_NO_ERROR 31
.altmacro
.set irq_vector, 32
.rept 16
    ISR_NO_ERROR %irq_vector
    .set irq_vector, irq_vector + 1
.endr

isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    mov %rsp, %rdi                    /* struct trap_frame * */
    sub $FXSAVE_AREA, %rsp
    fxsave64 (%rsp)
    cld
    call trap_dispatch
    fxrstor64 (%rsp)
    add $FXSAVE_AREA, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    add $16, %rsp                     /* vector and error code */
    iretq

    .section .rodata
    .balign 8
    .global isr_table
isr_table:                            /* (48) entry points, indexed by vector */
.macro ISR_ENTRY vector
    .quad isr_\vector
.endm
.set vector, 0
.rept 48
    ISR_ENTRY %vector
    .set vector, vector + 1
.endr
