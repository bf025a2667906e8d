/* 8259A driver (8259A datasheet, "Initialization Command Words", "Operation Command Words"). */
#include "kernel_lib/cpu/pic.h"
#include "kernel_lib/cpu/ports.h"

#define PIC_MASTER_COMMAND 0x20
#define PIC_MASTER_DATA    0x21
#define PIC_SLAVE_COMMAND  0xA0
#define PIC_SLAVE_DATA     0xA1

#define ICW1_ICW4          0x01   /* ICW4 follows                  */
#define ICW1_INIT          0x10   /* marks ICW1                    */
#define ICW4_8086          0x01   /* 8086/88 mode                  */
#define OCW2_EOI           0x20   /* non-specific end of interrupt */
#define OCW3_READ_ISR      0x0B
#define CASCADE_IRQ        2
#define SLAVE_IRQ_BASE     8
#define SPURIOUS_LEVEL     7

static void io_wait(void)
{
    outb(0x80, 0);                /* the POST port: a ~1 us bus cycle */
}

void pic_init(uint8_t master_base, uint8_t slave_base)
{
    outb(PIC_MASTER_COMMAND, ICW1_INIT | ICW1_ICW4);
    io_wait();
    outb(PIC_SLAVE_COMMAND, ICW1_INIT | ICW1_ICW4);
    io_wait();
    outb(PIC_MASTER_DATA, master_base);
    io_wait();
    outb(PIC_SLAVE_DATA, slave_base);
    io_wait();
    outb(PIC_MASTER_DATA, 1 << CASCADE_IRQ);     /* ICW3: slave on IR2 */
    io_wait();
    outb(PIC_SLAVE_DATA, CASCADE_IRQ);            /* ICW3: slave identity */
    io_wait();
    outb(PIC_MASTER_DATA, ICW4_8086);
    io_wait();
    outb(PIC_SLAVE_DATA, ICW4_8086);
    io_wait();
    outb(PIC_MASTER_DATA, (uint8_t)~(1 << CASCADE_IRQ));
    outb(PIC_SLAVE_DATA, 0xFF);
}

static uint16_t mask_port(unsigned irq)
{
    return irq < SLAVE_IRQ_BASE ? PIC_MASTER_DATA : PIC_SLAVE_DATA;
}

void pic_unmask(unsigned irq)
{
    uint16_t port = mask_port(irq);
    outb(port, inb(port) & ~(1 << (irq % SLAVE_IRQ_BASE)));
}

void pic_mask(unsigned irq)
{
    uint16_t port = mask_port(irq);
    outb(port, inb(port) | (1 << (irq % SLAVE_IRQ_BASE)));
}

void pic_send_eoi(unsigned irq)
{
    if (irq >= SLAVE_IRQ_BASE)
        outb(PIC_SLAVE_COMMAND, OCW2_EOI);
    outb(PIC_MASTER_COMMAND, OCW2_EOI);
}

int pic_is_spurious(unsigned irq)
{
    uint16_t command = irq < SLAVE_IRQ_BASE ? PIC_MASTER_COMMAND : PIC_SLAVE_COMMAND;

    if (irq % SLAVE_IRQ_BASE != SPURIOUS_LEVEL)
        return 0;
    outb(command, OCW3_READ_ISR);
    if (inb(command) & (1 << SPURIOUS_LEVEL))
        return 0;
    if (irq >= SLAVE_IRQ_BASE)
        outb(PIC_MASTER_COMMAND, OCW2_EOI);
    return 1;
}
