#include "kernel_lib/util/cmdline.h"
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
