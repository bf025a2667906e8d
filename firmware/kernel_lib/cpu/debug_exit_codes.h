/* Exit codes the reference firmware writes to the debug-exit port.
 * Kept below 64 so that they pass through `unisim boot` unchanged
 * (docs/booting.md, "Exit codes"). Shared by C and assembly. */
#ifndef KERNEL_LIB_CPU_DEBUG_EXIT_CODES_H
#define KERNEL_LIB_CPU_DEBUG_EXIT_CODES_H

#define EXIT_OK                 0
#define EXIT_BAD_BOOT_MAGIC     3   /* not started by a Multiboot2 loader */
#define EXIT_BAD_BOOT_INFO      4   /* boot information missing or malformed */
#define EXIT_PANIC              5   /* kernel_panic() */
#define EXIT_PLATFORM           6   /* timer or interrupt controller set-up failed */
#define EXIT_NO_HEAP            7   /* the memory map cannot hold the 64 MiB heap */
#define EXIT_NO_MODEL           8   /* job=llama without its "model"/"tokenizer" module */
#define EXIT_MODEL_CREATION     9   /* a model creation step failed (it printed which) */

#endif
