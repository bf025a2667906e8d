#include "kernel_lib/io/console.h"
#include "kernel_lib/io/serial.h"
#include "kernel_lib/io/vga.h"
#include "kernel_lib/util/format.h"


void console_init(void)
{
    serial_init();
    vga_init();
}

void console_putc(char c)
{
    serial_putc(c);
    vga_putc(c);
}

void console_write(const char *s)
{
    while (*s)
        console_putc(*s++);
}

static void console_write_n(const char *s, int length)
{
    for (int i = 0; i < length; i++)
        console_putc(s[i]);
}

void console_put_uint(uint64_t value)
{
    char digits[FORMAT_UINT64_MAX];

    console_write_n(digits, format_uint(value, digits));
}

void console_put_hex(uint64_t value, int min_digits)
{
    char digits[FORMAT_HEX64_MAX];

    console_write("0x");
    console_write_n(digits, format_hex(value, min_digits, digits));
}
