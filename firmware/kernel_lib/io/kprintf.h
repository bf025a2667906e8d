/* A small printf for the console. */
#ifndef KERNEL_LIB_IO_KPRINTF_H
#define KERNEL_LIB_IO_KPRINTF_H
#include <stdarg.h>
#include <stddef.h>

/* Conversions: %s %c %d %i %u %x %X %p %% with the length modifiers l, ll, z;
 * flags '0' and '-', and a field width. %p prints 0x and 16 hex digits.
 * Returns the number of characters written. Unknown conversions are printed
 * as they are. */
int kprintf(const char *format, ...) __attribute__((format(printf, 1, 2)));
int kvprintf(const char *format, va_list args);

/* The same, into buffer (always terminated when size > 0). Returns the length
 * the full output would have had. */
int ksnprintf(char *buffer, size_t size, const char *format, ...) __attribute__((format(printf, 3, 4)));

#endif
