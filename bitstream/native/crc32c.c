/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8. The tables are built when the library is
 * loaded (GCC/Clang constructor), before any thread can call in; other compilers build them on first use. */
#include "m3cvcore.h"

static uint32_t table[8][256];
static int table_ready = 0;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((constructor))
#endif
static void build_table(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++)
            table[t][n] = (table[t - 1][n] >> 8) ^ table[0][table[t - 1][n] & 0xFFu];
    table_ready = 1;
}

uint32_t m3cv_crc32c(uint32_t value, const uint8_t *data, size_t len)
{
    if (!table_ready)
        build_table();
    uint32_t crc = ~value;
    while (len >= 8) {
        uint32_t lo = crc ^ ((uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                             (uint32_t)data[3] << 24);
        crc = table[7][lo & 0xFFu] ^ table[6][(lo >> 8) & 0xFFu] ^ table[5][(lo >> 16) & 0xFFu] ^
              table[4][lo >> 24] ^ table[3][data[4]] ^ table[2][data[5]] ^ table[1][data[6]] ^ table[0][data[7]];
        data += 8;
        len -= 8;
    }
    while (len--)
        crc = table[0][(crc ^ *data++) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}
