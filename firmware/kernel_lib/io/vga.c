/* VGA text mode driver (IBM VGA technical reference: CRTC registers 0x0E/0x0F
 * hold the cursor location; each cell is a character byte and an attribute). */
#include "kernel_lib/io/vga.h"
#include "kernel_lib/cpu/ports.h"

#define VGA_TEXT_BUFFER     ((volatile uint16_t *)0xB8000)
#define CRTC_INDEX          0x3D4
#define CRTC_DATA           0x3D5
#define CRTC_CURSOR_START   0x0A
#define CRTC_CURSOR_END     0x0B
#define CRTC_CURSOR_HIGH    0x0E
#define CRTC_CURSOR_LOW     0x0F
#define CURSOR_SCANLINE_TOP 14
#define CURSOR_SCANLINE_END 15
#define ATTRIBUTE_DEFAULT   0x1F          /* white on blue */
#define TAB_WIDTH           8

static unsigned cursor_row, cursor_column;
static uint8_t attribute = ATTRIBUTE_DEFAULT;

static uint16_t cell(char c)
{
    return (uint16_t)(uint8_t)c | ((uint16_t)attribute << 8);
}

static void update_cursor(void)
{
    uint16_t position = (uint16_t)(cursor_row * VGA_COLUMNS + cursor_column);

    outb(CRTC_INDEX, CRTC_CURSOR_HIGH);
    outb(CRTC_DATA, position >> 8);
    outb(CRTC_INDEX, CRTC_CURSOR_LOW);
    outb(CRTC_DATA, position & 0xFF);
}

static void scroll_up(void)
{
    for (unsigned i = 0; i < (VGA_ROWS - 1) * VGA_COLUMNS; i++)
        VGA_TEXT_BUFFER[i] = VGA_TEXT_BUFFER[i + VGA_COLUMNS];
    for (unsigned i = 0; i < VGA_COLUMNS; i++)
        VGA_TEXT_BUFFER[(VGA_ROWS - 1) * VGA_COLUMNS + i] = cell(' ');
    cursor_row = VGA_ROWS - 1;
}

void vga_set_color(uint8_t new_attribute)
{
    attribute = new_attribute;
}

void vga_init(void)
{
    for (unsigned i = 0; i < VGA_ROWS * VGA_COLUMNS; i++)
        VGA_TEXT_BUFFER[i] = cell(' ');
    cursor_row = 0;
    cursor_column = 0;
    outb(CRTC_INDEX, CRTC_CURSOR_START);
    outb(CRTC_DATA, CURSOR_SCANLINE_TOP);
    outb(CRTC_INDEX, CRTC_CURSOR_END);
    outb(CRTC_DATA, CURSOR_SCANLINE_END);
    update_cursor();
}

static void newline(void)
{
    cursor_column = 0;
    if (++cursor_row == VGA_ROWS)
        scroll_up();
}

void vga_putc(char c)
{
    if (c == '\n') {
        newline();
    } else if (c == '\r') {
        cursor_column = 0;
    } else if (c == '\b') {
        if (cursor_column > 0)
            VGA_TEXT_BUFFER[cursor_row * VGA_COLUMNS + --cursor_column] = cell(' ');
    } else if (c == '\t') {
        do {
            vga_putc(' ');
        } while (cursor_column % TAB_WIDTH != 0);
        return;
    } else {
        VGA_TEXT_BUFFER[cursor_row * VGA_COLUMNS + cursor_column] = cell(c);
        if (++cursor_column == VGA_COLUMNS)
            newline();
    }
    update_cursor();
}

void vga_write(const char *s)
{
    while (*s)
        vga_putc(*s++);
}
