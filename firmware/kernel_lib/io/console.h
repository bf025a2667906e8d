/* The console: every character goes to COM1 and to the VGA screen. */
#ifndef KERNEL_LIB_IO_CONSOLE_H
#define KERNEL_LIB_IO_CONSOLE_H
#include <stdint.h>

void console_init(void);
void console_putc(char c);
void console_write(const char *s);
void console_put_uint(uint64_t value);
void console_put_hex(uint64_t value, int min_digits);

#endif
