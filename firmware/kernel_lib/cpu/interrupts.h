/* Interrupts and exceptions: the IDT, the trap frame every stub builds, and
 * the table of IRQ handlers (in the style of xv6's trap.c). */
#ifndef KERNEL_LIB_CPU_INTERRUPTS_H
#define KERNEL_LIB_CPU_INTERRUPTS_H
#include <stdint.h>

#define EXCEPTION_VECTORS   32
#define IRQ_BASE_VECTOR     0x20      /* PIC master remapped here, slave at +8 */
#define IRQ_LINES           16
#define IDT_VECTORS         (IRQ_BASE_VECTOR + IRQ_LINES)

/* Built by isr_stubs.S, lowest address first. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector;
    uint64_t error_code;                 /* 0 for vectors without one */
    uint64_t rip, cs, rflags, rsp, ss;   /* pushed by the CPU */
};

typedef void (*irq_handler_t)(struct trap_frame *frame);

/* Fills and loads the IDT: 32 exception gates and 16 IRQ gates, all
 * interrupt gates (IF cleared on entry) in the kernel code segment. */
void idt_init(void);

/* Installs handler for irq (0-15). Returns 0, or -1 if irq is out of range. */
int irq_set_handler(unsigned irq, irq_handler_t handler);

/* Called by isr_common for every vector. */
void trap_dispatch(struct trap_frame *frame);

/* Returns the mnemonic of exception vector (e.g. "#PF"), or "IRQ"/"?". */
const char *exception_name(uint64_t vector);

static inline void interrupts_enable(void) { __asm__ volatile("sti"); }
static inline void interrupts_disable(void) { __asm__ volatile("cli"); }
static inline void cpu_halt(void) { __asm__ volatile("hlt"); }

/* Enables interrupts and halts until the next one arrives (sti; hlt is atomic). */
static inline void cpu_wait_for_interrupt(void) { __asm__ volatile("sti; hlt"); }

#endif
