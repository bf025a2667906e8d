/* Functions that fail on purpose, for the simulator's crash-report tests.
 * Nothing in the kernel calls them; tests call them as guest functions. */
#ifndef KERNEL_LIB_TESTING_CRASH_LAB_H
#define KERNEL_LIB_TESTING_CRASH_LAB_H
#include <stdint.h>

/* crash_level1 -> crash_level2 -> crash_level3, which stores value at address.
 * Returns the sum of the three levels' locals (so that no call is a tail call). */
uint64_t crash_level1(uint64_t address, uint64_t value);

/* Recurses with a 4 KiB frame per level until depth reaches limit (give a
 * limit past the 64 KiB stack to overflow it). Returns a checksum of the frames. */
uint64_t crash_recurse(uint64_t depth, uint64_t limit);

/* Overwrites its own return address with target through an out-of-bounds
 * array write, then returns - into target. */
void crash_return_into(uint64_t target);

#endif
