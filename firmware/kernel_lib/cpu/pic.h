/* The 8259A PIC pair (master 0x20/0x21, slave 0xA0/0xA1, slave on IR2). */
#ifndef KERNEL_LIB_CPU_PIC_H
#define KERNEL_LIB_CPU_PIC_H
#include <stdint.h>

/* Re-initialises both PICs with vector bases master_base/slave_base (ICW1-4:
 * edge triggered, cascade, 8086 mode) and masks every IRQ but the cascade. */
void pic_init(uint8_t master_base, uint8_t slave_base);

void pic_unmask(unsigned irq);
void pic_mask(unsigned irq);

/* Non-specific EOI to the slave (for IRQ 8-15) and the master. */
void pic_send_eoi(unsigned irq);

/* Returns 1 if irq is 7 or 15 and its ISR bit is clear: a spurious interrupt.
 * For a spurious IRQ 15 the master still gets its EOI (its IR2 was genuine). */
int pic_is_spurious(unsigned irq);

#endif
