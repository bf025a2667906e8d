/* kprintf: one pass over the format, each conversion rendered into a small
 * buffer and then padded into the sink (the console or a string). */
#include "kernel_lib/io/kprintf.h"
#include "kernel_lib/io/console.h"
#include "kernel_lib/libc/string.h"
#include "kernel_lib/util/format.h"
#include <stdint.h>

#define POINTER_HEX_DIGITS 16

struct sink {
    char *buffer;             /* NULL: the console */
    size_t size;
    size_t length;            /* characters produced so far */
};

static void sink_putc(struct sink *sink, char c)
{
    if (sink->buffer == 0)
        console_putc(c);
    else if (sink->length + 1 < sink->size)
        sink->buffer[sink->length] = c;
    sink->length++;
}

static void sink_pad(struct sink *sink, char c, int count)
{
    while (count-- > 0)
        sink_putc(sink, c);
}

struct spec {
    int left;                 /* '-' */
    int zero;                 /* '0' */
    int width;
    int length;               /* 0, 1 (l, z), 2 (ll) */
};

/* Emits prefix (a sign or "0x") and digits, padded to the field width. */
static void emit_number(struct sink *sink, const struct spec *spec, const char *prefix,
                        const char *digits, int count)
{
    int prefix_length = (int)strlen(prefix);
    int padding = spec->width - prefix_length - count;

    if (!spec->left && !spec->zero)
        sink_pad(sink, ' ', padding);
    for (int i = 0; i < prefix_length; i++)
        sink_putc(sink, prefix[i]);
    if (!spec->left && spec->zero)
        sink_pad(sink, '0', padding);
    for (int i = 0; i < count; i++)
        sink_putc(sink, digits[i]);
    if (spec->left)
        sink_pad(sink, ' ', padding);
}

static void emit_string(struct sink *sink, const struct spec *spec, const char *s)
{
    int length;

    if (s == 0)
        s = "(null)";
    length = (int)strlen(s);
    if (!spec->left)
        sink_pad(sink, ' ', spec->width - length);
    for (int i = 0; i < length; i++)
        sink_putc(sink, s[i]);
    if (spec->left)
        sink_pad(sink, ' ', spec->width - length);
}

static uint64_t take_unsigned(va_list *args, int length)
{
    if (length == 2)
        return va_arg(*args, unsigned long long);
    if (length == 1)
        return va_arg(*args, unsigned long);
    return va_arg(*args, unsigned int);
}

static int64_t take_signed(va_list *args, int length)
{
    if (length == 2)
        return va_arg(*args, long long);
    if (length == 1)
        return va_arg(*args, long);
    return va_arg(*args, int);
}

static const char *parse_spec(const char *f, struct spec *spec)
{
    *spec = (struct spec){0};
    for (;; f++) {
        if (*f == '-')
            spec->left = 1;
        else if (*f == '0')
            spec->zero = 1;
        else
            break;
    }
    while (*f >= '0' && *f <= '9')
        spec->width = spec->width * 10 + (*f++ - '0');
    if (*f == 'z') {
        spec->length = 1;
        f++;
    }
    while (*f == 'l') {
        spec->length++;
        f++;
    }
    return f;
}

static void convert(struct sink *sink, char conversion, const struct spec *spec, va_list *args)
{
    char digits[FORMAT_UINT64_MAX];
    int count;

    switch (conversion) {
    case 'd':
    case 'i': {
        int64_t value = take_signed(args, spec->length);
        uint64_t magnitude = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
        count = format_uint(magnitude, digits);
        emit_number(sink, spec, value < 0 ? "-" : "", digits, count);
        break;
    }
    case 'u':
        count = format_uint(take_unsigned(args, spec->length), digits);
        emit_number(sink, spec, "", digits, count);
        break;
    case 'x':
    case 'X':
        count = format_hex(take_unsigned(args, spec->length), 1, digits);
        if (conversion == 'X')
            for (int i = 0; i < count; i++)
                if (digits[i] >= 'a')
                    digits[i] = (char)(digits[i] - 'a' + 'A');
        emit_number(sink, spec, "", digits, count);
        break;
    case 'p':
        count = format_hex((uint64_t)(uintptr_t)va_arg(*args, void *), POINTER_HEX_DIGITS, digits);
        emit_number(sink, spec, "0x", digits, count);
        break;
    case 'c': {
        char text[2] = {(char)va_arg(*args, int), 0};
        emit_string(sink, spec, text);
        break;
    }
    case 's':
        emit_string(sink, spec, va_arg(*args, const char *));
        break;
    default:
        sink_putc(sink, '%');
        sink_putc(sink, conversion);
        break;
    }
}

static int format_into(struct sink *sink, const char *format, va_list args)
{
    va_list local;

    va_copy(local, args);
    for (const char *f = format; *f; f++) {
        struct spec spec;

        if (*f != '%') {
            sink_putc(sink, *f);
            continue;
        }
        if (f[1] == '%') {
            sink_putc(sink, '%');
            f++;
            continue;
        }
        f = parse_spec(f + 1, &spec);
        if (*f == 0)
            break;
        convert(sink, *f, &spec, &local);
    }
    va_end(local);
    return (int)sink->length;
}

int kvprintf(const char *format, va_list args)
{
    struct sink sink = {0, 0, 0};
    return format_into(&sink, format, args);
}

int kprintf(const char *format, ...)
{
    va_list args;
    int length;

    va_start(args, format);
    length = kvprintf(format, args);
    va_end(args);
    return length;
}

int ksnprintf(char *buffer, size_t size, const char *format, ...)
{
    struct sink sink = {buffer, size, 0};
    va_list args;
    int length;

    va_start(args, format);
    length = format_into(&sink, format, args);
    va_end(args);
    if (size > 0)
        buffer[sink.length < size ? sink.length : size - 1] = 0;
    return length;
}
