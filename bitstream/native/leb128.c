/* Unsigned LEB128, minimal encoding (docs/bitstream.md). */
#include "m3cvcore.h"

size_t m3cv_leb128_write(uint64_t value, uint8_t *out)
{
    size_t n = 0;
    do {
        uint8_t byte = value & 0x7Fu;
        value >>= 7;
        out[n++] = value ? (uint8_t)(byte | 0x80u) : byte;
    } while (value);
    return n;
}

int m3cv_leb128_read(const uint8_t *data, size_t len, size_t max_bytes, uint64_t *value, size_t *used)
{
    uint64_t v = 0;
    if (max_bytes > 9)
        max_bytes = 9; /* 9 * 7 = 63 bits: no shift can overflow */
    for (size_t i = 0; i < max_bytes; i++) {
        if (i >= len)
            return M3CV_ERR_LEB128;
        uint8_t byte = data[i];
        v |= (uint64_t)(byte & 0x7Fu) << (7 * i);
        if (!(byte & 0x80u)) {
            if (byte == 0 && i > 0)
                return M3CV_ERR_LEB128;
            *value = v;
            *used = i + 1;
            return M3CV_OK;
        }
    }
    return M3CV_ERR_LEB128;
}
