/* Number formatting shared by the serial console, the VGA console and kprintf. */
#ifndef KERNEL_LIB_UTIL_FORMAT_H
#define KERNEL_LIB_UTIL_FORMAT_H
#include <stdint.h>

#define FORMAT_UINT64_MAX 20          /* digits of 18446744073709551615 */
#define FORMAT_HEX64_MAX  16

/* Writes the decimal digits of value to out (no terminator). Returns the count (1..20). */
int format_uint(uint64_t value, char *out);

/* Writes value in lower-case hex, at least min_digits digits (1..16), no "0x",
 * no terminator. Returns the count. */
int format_hex(uint64_t value, int min_digits, char *out);

#endif
