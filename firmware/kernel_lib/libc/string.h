/* Freestanding mem* and str* functions with C linkage, so that the
 * compiler's own implicit calls (struct copies, zeroing) land here.
 * Semantics are the C standard's (C11 7.24). */
#ifndef KERNEL_LIB_LIBC_STRING_H
#define KERNEL_LIB_LIBC_STRING_H
#include <stddef.h>

void *memcpy(void *dest, const void *src, size_t n);
void *memmove(void *dest, const void *src, size_t n);
void *memset(void *dest, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
void *memchr(const void *s, int c, size_t n);       /* NULL if c is not in the n bytes */
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);
char *strrchr(const char *s, int c);
char *strcpy(char *dest, const char *src);
char *strncpy(char *dest, const char *src, size_t n);

#endif
