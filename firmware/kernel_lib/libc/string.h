/* Freestanding mem* and str* functions with C linkage, so that the
 * compiler's own implicit calls (struct copies, zeroing) land here. */
#ifndef KERNEL_LIB_LIBC_STRING_H
#define KERNEL_LIB_LIBC_STRING_H
#include <stddef.h>

void *memcpy(void *dest, const void *src, size_t n);
void *memmove(void *dest, const void *src, size_t n);
void *memset(void *dest, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif
