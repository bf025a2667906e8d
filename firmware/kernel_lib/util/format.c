#include "kernel_lib/util/format.h"

int format_uint(uint64_t value, char *out)
{
    char reversed[FORMAT_UINT64_MAX];   /* least significant digit first */
    int count = 0;

    do {
        reversed[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    for (int i = 0; i < count; i++)
        out[i] = reversed[count - 1 - i];
    return count;
}

int format_hex(uint64_t value, int min_digits, char *out)
{
    static const char hex[] = "0123456789abcdef";
    int digits = FORMAT_HEX64_MAX;

    if (min_digits < 1)
        min_digits = 1;
    while (digits > min_digits && ((value >> ((digits - 1) * 4)) & 0xF) == 0)
        digits--;
    for (int i = 0; i < digits; i++)
        out[i] = hex[(value >> ((digits - 1 - i) * 4)) & 0xF];
    return digits;
}
