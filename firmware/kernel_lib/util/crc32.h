#ifndef KERNEL_LIB_UTIL_CRC32_H
#define KERNEL_LIB_UTIL_CRC32_H
#include <stdint.h>

/* CRC-32 as in IEEE 802.3 / zlib (reflected polynomial 0xEDB88320, initial
 * and final value 0xFFFFFFFF): crc32(data) equals Python's zlib.crc32(data). */
uint32_t crc32(const void *data, uint64_t length);

#endif
