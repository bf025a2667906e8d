#include "kernel_lib/util/cmdline.h"
#include <stdint.h>
#include "kernel_lib/libc/string.h"

/* "prompt=" takes the rest of the line, so that a prompt may contain spaces. */
#define REST_OF_LINE_KEY "prompt"

static int is_word_start(const char *cmdline, const char *at)
{
    return at == cmdline || at[-1] == ' ';
}

int cmdline_get(const char *cmdline, const char *key, char *out, size_t out_size)
{
    size_t key_length = strlen(key);
    int rest = strcmp(key, REST_OF_LINE_KEY) == 0;

    for (const char *at = cmdline; *at; at++) {
        size_t length = 0;

        if (!is_word_start(cmdline, at) || strncmp(at, key, key_length) != 0 || at[key_length] != '=')
            continue;
        at += key_length + 1;
        while (at[length] && (rest || at[length] != ' '))
            length++;
        if (length + 1 > out_size)
            return -2;
        memcpy(out, at, length);
        out[length] = 0;
        return (int)length;
    }
    return -1;
}

#define OPTION_MAX 32

/* Decimal "123" or "0.9" (no exponent). Returns fallback when text is empty. */
static float parse_float(const char *text, float fallback)
{
    float value = 0.0f, scale = 1.0f;
    int seen_point = 0, seen_digit = 0, negative = *text == '-';

    for (const char *c = text + negative; *c; c++) {
        if (*c == '.' && !seen_point) {
            seen_point = 1;
        } else if (*c >= '0' && *c <= '9') {
            seen_digit = 1;
            if (seen_point) {
                scale /= 10.0f;
                value += (*c - '0') * scale;
            } else {
                value = value * 10.0f + (*c - '0');
            }
        } else {
            break;
        }
    }
    if (!seen_digit)
        return fallback;
    return negative ? -value : value;
}

static uint64_t parse_uint(const char *text, uint64_t fallback)
{
    uint64_t value = 0;

    if (*text < '0' || *text > '9')
        return fallback;
    for (; *text >= '0' && *text <= '9'; text++)
        value = value * 10 + (uint64_t)(*text - '0');
    return value;
}

float cmdline_float(const char *cmdline, const char *key, float fallback)
{
    char text[OPTION_MAX];
    return cmdline_get(cmdline, key, text, sizeof(text)) > 0 ? parse_float(text, fallback) : fallback;
}

uint64_t cmdline_uint(const char *cmdline, const char *key, uint64_t fallback)
{
    char text[OPTION_MAX];
    return cmdline_get(cmdline, key, text, sizeof(text)) > 0 ? parse_uint(text, fallback) : fallback;
}

