/* Portable C in the llvm-libc style: simple loops the compiler can optimise.
 * Built with -fno-builtin so that these loops are not turned back into
 * calls to themselves. Comparisons are of unsigned char, as C11 requires. */
#include <stdint.h>

#include "kernel_lib/libc/string.h"

/* Size-specialised fast paths, chosen at build time from a profile of the calls
 * (`unisim pgo` passes -DMEMCPY_HOT_SIZE=N / -DMEMSET_HOT_SIZE=N: the size most calls
 * asked for in the training run). A generic build has none: byte loops, boot 1. */
#define WORD_BYTES 8
typedef uint64_t __attribute__((may_alias, aligned(1))) any_word;   /* x86: no alignment needed */

/* n bytes as words then bytes; n is a constant where it is inlined, so this unrolls. */
static inline __attribute__((always_inline)) void copy_fixed(unsigned char *d, const unsigned char *s,
                                                              size_t n)
{
    size_t i = 0;
    for (; i + WORD_BYTES <= n; i += WORD_BYTES)
        *(any_word *)(d + i) = *(const any_word *)(s + i);
    for (; i < n; i++)
        d[i] = s[i];
}

static inline __attribute__((always_inline)) void fill_fixed(unsigned char *d, unsigned char c, size_t n)
{
    const uint64_t pattern = 0x0101010101010101ull * c;
    size_t i = 0;
    for (; i + WORD_BYTES <= n; i += WORD_BYTES)
        *(any_word *)(d + i) = pattern;
    for (; i < n; i++)
        d[i] = c;
}

void *memcpy(void *dest, const void *src, size_t n)
{
    unsigned char *d = dest;
    const unsigned char *s = src;

#ifdef MEMCPY_HOT_SIZE
    if (n == MEMCPY_HOT_SIZE) {
        copy_fixed(d, s, MEMCPY_HOT_SIZE);
        return dest;
    }
#endif
    for (size_t i = 0; i < n; i++)
        d[i] = s[i];
    return dest;
}

void *memmove(void *dest, const void *src, size_t n)
{
    unsigned char *d = dest;
    const unsigned char *s = src;

    if (d == s || n == 0)
        return dest;
    if (d < s) {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    } else {
        for (size_t i = n; i > 0; i--)
            d[i - 1] = s[i - 1];
    }
    return dest;
}

void *memset(void *dest, int c, size_t n)
{
    unsigned char *d = dest;

#ifdef MEMSET_HOT_SIZE
    if (n == MEMSET_HOT_SIZE) {
        fill_fixed(d, (unsigned char)c, MEMSET_HOT_SIZE);
        return dest;
    }
#endif
    for (size_t i = 0; i < n; i++)
        d[i] = (unsigned char)c;
    return dest;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a;
    const unsigned char *y = b;

    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

void *memchr(const void *s, int c, size_t n)
{
    const unsigned char *p = s;

    for (size_t i = 0; i < n; i++)
        if (p[i] == (unsigned char)c)
            return (void *)(p + i);
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;

    while (s[n])
        n++;
    return n;
}

size_t strnlen(const char *s, size_t max)
{
    size_t n = 0;

    while (n < max && s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a;
    const unsigned char *y = (const unsigned char *)b;

    while (*x && *x == *y) {
        x++;
        y++;
    }
    return *x == *y ? 0 : (*x < *y ? -1 : 1);
}

int strncmp(const char *a, const char *b, size_t n)
{
    const unsigned char *x = (const unsigned char *)a;
    const unsigned char *y = (const unsigned char *)b;

    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
        if (x[i] == 0)
            return 0;
    }
    return 0;
}

char *strchr(const char *s, int c)
{
    const char target = (char)c;

    for (;; s++) {
        if (*s == target)
            return (char *)s;
        if (*s == 0)
            return 0;
    }
}

char *strrchr(const char *s, int c)
{
    const char target = (char)c;
    const char *found = 0;

    for (;; s++) {
        if (*s == target)
            found = s;
        if (*s == 0)
            return (char *)found;
    }
}

char *strcpy(char *dest, const char *src)
{
    size_t i = 0;

    do {
        dest[i] = src[i];
    } while (src[i++]);
    return dest;
}

char *strncpy(char *dest, const char *src, size_t n)
{
    size_t i = 0;

    for (; i < n && src[i]; i++)
        dest[i] = src[i];
    for (; i < n; i++)
        dest[i] = 0;
    return dest;
}
