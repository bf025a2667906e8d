/* What happens on every interrupt and exception: IRQs go to their handler and
 * are acknowledged at the PIC; exceptions are reported and the kernel panics. */
#include "kernel_lib/cpu/interrupts.h"
#include "kernel_lib/cpu/debug_exit.h"
#include "kernel_lib/cpu/pic.h"
#include "kernel_lib/io/serial.h"

#define VECTOR_PAGE_FAULT 14
#define ADDRESS_DIGITS    16

static irq_handler_t irq_handlers[IRQ_LINES];   /* (irq) */

static const char *const exception_names[EXCEPTION_VECTORS] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available", "#DF double fault",
    "coprocessor segment overrun", "#TS invalid TSS", "#NP segment not present",
    "#SS stack fault", "#GP general protection", "#PF page fault", "reserved",
    "#MF x87 floating point", "#AC alignment check", "#MC machine check",
    "#XM SIMD floating point", "#VE virtualization", "#CP control protection",
    "reserved", "reserved", "reserved", "reserved", "reserved", "reserved",
    "reserved", "reserved", "reserved", "reserved",
};

const char *exception_name(uint64_t vector)
{
    if (vector < EXCEPTION_VECTORS)
        return exception_names[vector];
    return vector < IDT_VECTORS ? "IRQ" : "?";
}

int irq_set_handler(unsigned irq, irq_handler_t handler)
{
    if (irq >= IRQ_LINES)
        return -1;
    irq_handlers[irq] = handler;
    return 0;
}

static uint64_t read_cr2(void)
{
    uint64_t value;
    __asm__ volatile("mov %%cr2, %0" : "=r"(value));
    return value;
}

static void report_exception(const struct trap_frame *frame)
{
    serial_write("EXCEPTION: vector ");
    serial_put_uint(frame->vector);
    serial_write(" (");
    serial_write(exception_name(frame->vector));
    serial_write(") error=");
    serial_put_hex(frame->error_code, 1);
    serial_write(" rip=");
    serial_put_hex(frame->rip, ADDRESS_DIGITS);
    if (frame->vector == VECTOR_PAGE_FAULT) {
        serial_write(" cr2=");
        serial_put_hex(read_cr2(), ADDRESS_DIGITS);
    }
    serial_write("\n");
}

static void dispatch_irq(struct trap_frame *frame)
{
    unsigned irq = (unsigned)(frame->vector - IRQ_BASE_VECTOR);

    if (pic_is_spurious(irq))
        return;                   /* a spurious IRQ 7/15 must not be acknowledged */
    if (irq_handlers[irq])
        irq_handlers[irq](frame);
    pic_send_eoi(irq);
}

void trap_dispatch(struct trap_frame *frame)
{
    if (frame->vector >= IRQ_BASE_VECTOR && frame->vector < IDT_VECTORS) {
        dispatch_irq(frame);
        return;
    }
    report_exception(frame);
    kernel_panic("unhandled exception");
}
