/* PS/2 keyboard behind the i8042, scancode set 1 (translation on), US layout. */
#ifndef KERNEL_LIB_IO_KEYBOARD_H
#define KERNEL_LIB_IO_KEYBOARD_H

/* Enables the keyboard port and IRQ 1. Returns 0, or -1 if the controller's
 * self-test did not answer 0x55. */
int keyboard_init(void);

/* Returns the next typed character, or -1 if none is waiting. */
int keyboard_getc(void);

#endif
