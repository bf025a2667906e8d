/* VGA text console: 80x25 cells at 0xB8000, hardware cursor via the CRTC. */
#ifndef KERNEL_LIB_IO_VGA_H
#define KERNEL_LIB_IO_VGA_H
#include <stdint.h>

#define VGA_COLUMNS 80
#define VGA_ROWS    25

/* Clears the screen to light grey on blue and homes the cursor. */
void vga_init(void);
void vga_putc(char c);
void vga_write(const char *s);
void vga_set_color(uint8_t attribute);

#endif
