#include "kernel_lib/util/crc32.h"

#define CRC32_POLYNOMIAL_REFLECTED 0xEDB88320u
#define CRC32_TABLE_SIZE           256
#define CRC32_SLICES               8      /* bytes folded per step ("slicing-by-8") */

/* crc32_table[0][byte]: the CRC of that byte; crc32_table[k][byte]: of that
 * byte followed by k zero bytes, so eight lookups fold eight bytes at once
 * (a 100 MB module's boot line costs a third of the byte-at-a-time loop). */
static uint32_t crc32_table[CRC32_SLICES][CRC32_TABLE_SIZE];
static int crc32_table_ready;

static void crc32_build_table(void)
{
    for (uint32_t byte = 0; byte < CRC32_TABLE_SIZE; byte++) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 1) ? (crc >> 1) ^ CRC32_POLYNOMIAL_REFLECTED : crc >> 1;
        crc32_table[0][byte] = crc;
    }
    for (int k = 1; k < CRC32_SLICES; k++)
        for (uint32_t byte = 0; byte < CRC32_TABLE_SIZE; byte++)
            crc32_table[k][byte] = crc32_table[0][crc32_table[k - 1][byte] & 0xFF] ^ (crc32_table[k - 1][byte] >> 8);
    crc32_table_ready = 1;
}

/* Eight bytes at p folded into crc (little-endian loads). */
static uint32_t crc32_fold8(uint32_t crc, const uint8_t *p)
{
    uint64_t word;
    uint32_t low, high;

    __builtin_memcpy(&word, p, sizeof(word));          /* one unaligned load, inlined */
    low = crc ^ (uint32_t)word;
    high = (uint32_t)(word >> 32);

    return crc32_table[7][low & 0xFF] ^ crc32_table[6][(low >> 8) & 0xFF] ^ crc32_table[5][(low >> 16) & 0xFF]
           ^ crc32_table[4][low >> 24] ^ crc32_table[3][high & 0xFF] ^ crc32_table[2][(high >> 8) & 0xFF]
           ^ crc32_table[1][(high >> 16) & 0xFF] ^ crc32_table[0][high >> 24];
}

uint32_t crc32(const void *data, uint64_t length)
{
    const uint8_t *bytes = data;
    uint32_t crc = 0xFFFFFFFFu;
    uint64_t i = 0;

    if (!crc32_table_ready)
        crc32_build_table();
    for (; i + CRC32_SLICES <= length; i += CRC32_SLICES)
        crc = crc32_fold8(crc, bytes + i);
    for (; i < length; i++)
        crc = crc32_table[0][(crc ^ bytes[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}
