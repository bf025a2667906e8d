/* key=value words of the Multiboot2 command line. */
#ifndef KERNEL_LIB_UTIL_CMDLINE_H
#define KERNEL_LIB_UTIL_CMDLINE_H
#include <stddef.h>
#include <stdint.h>

/* Copies the value of key (the text after "key=" up to the next space, or to
 * the end of the line for the last key "prompt") into out, terminated.
 * Returns the value's length, -1 if key is absent, or -2 if out is too small. */
int cmdline_get(const char *cmdline, const char *key, char *out, size_t out_size);

/* The value of key as a decimal ("123", "0.9", "-1.5"; no exponent), or
 * fallback when key is absent or its value does not start with a number. */
float cmdline_float(const char *cmdline, const char *key, float fallback);
uint64_t cmdline_uint(const char *cmdline, const char *key, uint64_t fallback);

#endif
