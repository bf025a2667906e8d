#include "kernel_lib/util/crc32.h"

#define CRC32_POLYNOMIAL_REFLECTED 0xEDB88320u
#define CRC32_TABLE_SIZE           256

static uint32_t crc32_table[CRC32_TABLE_SIZE];   /* (byte) -> CRC of that byte */
static int crc32_table_ready;

static void crc32_build_table(void)
{
    for (uint32_t byte = 0; byte < CRC32_TABLE_SIZE; byte++) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 1) ? (crc >> 1) ^ CRC32_POLYNOMIAL_REFLECTED : crc >> 1;
        crc32_table[byte] = crc;
    }
    crc32_table_ready = 1;
}

uint32_t crc32(const void *data, uint64_t length)
{
    const uint8_t *bytes = data;
    uint32_t crc = 0xFFFFFFFFu;

    if (!crc32_table_ready)
        crc32_build_table();
    for (uint64_t i = 0; i < length; i++)
        crc = crc32_table[(crc ^ bytes[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}
