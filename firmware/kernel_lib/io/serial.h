/* COM1 serial console (16550A UART), polled. */
#ifndef KERNEL_LIB_IO_SERIAL_H
#define KERNEL_LIB_IO_SERIAL_H
#include <stdint.h>

/* Programs COM1 for 115200 baud, 8N1, FIFOs on, and checks it in loopback.
 * Returns 0 on success, -1 if no working UART answered (output is then
 * still attempted, since a missing UART only loses bytes). */
int serial_init(void);

void serial_putc(char c);
void serial_write(const char *s);
void serial_write_n(const char *s, uint64_t length);

/* Decimal text of value, all of uint64. */
void serial_put_uint(uint64_t value);
/* Decimal text of value, INT64_MIN included. */
void serial_put_int(int64_t value);
/* "0x" then lower-case hex digits of value, at least min_digits of them. */
void serial_put_hex(uint64_t value, int min_digits);

/* Returns the next received byte, or -1 if none is waiting. */
int serial_getc_nonblocking(void);

#endif
