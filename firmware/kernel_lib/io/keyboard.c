/* i8042 + PS/2 keyboard driver: IRQ 1 reads a scancode, the US set-1 table
 * turns make codes into characters, shift is tracked, breaks are dropped. */
#include "kernel_lib/io/keyboard.h"
#include "kernel_lib/cpu/interrupts.h"
#include "kernel_lib/cpu/pic.h"
#include "kernel_lib/cpu/ports.h"
#include <stdint.h>

#define KBC_DATA             0x60
#define KBC_STATUS           0x64
#define KBC_COMMAND          0x64
#define STATUS_OUTPUT_FULL   0x01
#define CMD_SELF_TEST        0xAA
#define CMD_ENABLE_PORT1     0xAE
#define SELF_TEST_PASSED     0x55
#define SCANCODE_BREAK       0x80
#define SCANCODE_LSHIFT      0x2A
#define SCANCODE_RSHIFT      0x36
#define SCANCODE_EXTENDED    0xE0
#define KEYBOARD_IRQ         1
#define BUFFER_SIZE          64          /* power of two */
#define SCANCODE_TABLE_SIZE  0x3A

static const char unshifted[SCANCODE_TABLE_SIZE] = {
    0, 27, '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '-', '=', '\b', '\t',
    'q', 'w', 'e', 'r', 't', 'y', 'u', 'i', 'o', 'p', '[', ']', '\n', 0, 'a', 's',
    'd', 'f', 'g', 'h', 'j', 'k', 'l', ';', '\'', '`', 0, '\\', 'z', 'x', 'c', 'v',
    'b', 'n', 'm', ',', '.', '/', 0, '*', 0, ' ',
};
static const char shifted[SCANCODE_TABLE_SIZE] = {
    0, 27, '!', '@', '#', '$', '%', '^', '&', '*', '(', ')', '_', '+', '\b', '\t',
    'Q', 'W', 'E', 'R', 'T', 'Y', 'U', 'I', 'O', 'P', '{', '}', '\n', 0, 'A', 'S',
    'D', 'F', 'G', 'H', 'J', 'K', 'L', ':', '"', '~', 0, '|', 'Z', 'X', 'C', 'V',
    'B', 'N', 'M', '<', '>', '?', 0, '*', 0, ' ',
};

static volatile char buffer[BUFFER_SIZE];         /* (BUFFER_SIZE) ring of typed chars */
static volatile unsigned head, tail;
static int shift_down, extended_prefix;

static void buffer_put(char c)
{
    if (head - tail < BUFFER_SIZE)
        buffer[head++ % BUFFER_SIZE] = c;
}

static void handle_scancode(uint8_t code)
{
    if (code == SCANCODE_EXTENDED) {
        extended_prefix = 1;
        return;
    }
    if (extended_prefix) {          /* arrows and friends: no character */
        extended_prefix = 0;
        return;
    }
    if ((code & ~SCANCODE_BREAK) == SCANCODE_LSHIFT || (code & ~SCANCODE_BREAK) == SCANCODE_RSHIFT) {
        shift_down = !(code & SCANCODE_BREAK);
        return;
    }
    if (code & SCANCODE_BREAK || code >= SCANCODE_TABLE_SIZE)
        return;
    if ((shift_down ? shifted : unshifted)[code])
        buffer_put((shift_down ? shifted : unshifted)[code]);
}

static void keyboard_irq(struct trap_frame *frame)
{
    (void)frame;
    while (inb(KBC_STATUS) & STATUS_OUTPUT_FULL)
        handle_scancode(inb(KBC_DATA));
}

int keyboard_init(void)
{
    outb(KBC_COMMAND, CMD_SELF_TEST);
    while ((inb(KBC_STATUS) & STATUS_OUTPUT_FULL) == 0)
        ;
    if (inb(KBC_DATA) != SELF_TEST_PASSED)
        return -1;
    outb(KBC_COMMAND, CMD_ENABLE_PORT1);
    irq_set_handler(KEYBOARD_IRQ, keyboard_irq);
    pic_unmask(KEYBOARD_IRQ);
    return 0;
}

int keyboard_getc(void)
{
    int c;

    if (head == tail)
        return -1;
    c = (unsigned char)buffer[tail % BUFFER_SIZE];
    tail++;
    return c;
}
