/* Leaving the machine: the isa-debug-exit convention (port 0xF4). */
#ifndef KERNEL_LIB_CPU_DEBUG_EXIT_H
#define KERNEL_LIB_CPU_DEBUG_EXIT_H
#include <stdint.h>
#include "kernel_lib/cpu/debug_exit_codes.h"

#define DEBUG_EXIT_PORT 0xF4

/* Writes code to the debug-exit port. Under unisim the run ends there with
 * that exit status; on a machine without the port it halts for ever. */
__attribute__((noreturn)) void debug_exit(uint32_t code);

/* Prints "PANIC: message" on the serial console and exits with EXIT_PANIC.
 * The simulator knows this symbol and reports a guest panic. */
__attribute__((noreturn)) void kernel_panic(const char *message);

#endif
