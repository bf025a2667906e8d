#include "kernel_lib/cpu/debug_exit.h"
#include "kernel_lib/cpu/ports.h"
#include "kernel_lib/io/serial.h"

void debug_exit(uint32_t code)
{
    outl(DEBUG_EXIT_PORT, code);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void kernel_panic(const char *message)
{
    serial_write("PANIC: ");
    serial_write(message);
    serial_write("\n");
    debug_exit(EXIT_PANIC);
}
