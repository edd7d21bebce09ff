/* Static-context rANS coder for token grids (normative description: docs/entropy.md).
 *
 * 32-bit state x in [L, 256 L) with L = 2^23, byte-wise renormalisation, tables of 2^precision (precision <= 16).
 * The encoder codes tokens in reverse raster order and writes its bytes back to front; the stream starts with the
 * final encoder state (4 bytes, little-endian) followed by the renormalisation bytes in the order the decoder reads
 * them. The decoder must end with x == L having consumed every byte.
 */
#include <string.h>

#include "m3cvcore.h"

uint32_t m3cv_abi_version(void)
{
    return M3CV_ABI_VERSION;
}

uint32_t m3cv_model_contexts(const m3cv_model *model)
{
    return model->level_groups * (model->classes + 1) * (model->classes + 1);
}

size_t m3cv_encode_bound(size_t n)
{
    return 4 + 2 * n;
}

/* Parameters and the class table (cheap, run by every call); the cumulative tables are checked by m3cv_model_check. */
static int params_ok(const m3cv_model *m)
{
    if (!m || !m->symbol_class || !m->cum || m->vocab < 1 || m->vocab > M3CV_MAX_VOCAB ||
        m->precision < M3CV_MIN_PRECISION || m->precision > M3CV_MAX_PRECISION || m->vocab > (1u << m->precision) ||
        m->classes > M3CV_MAX_CLASSES || m->level_groups < 1 || m->level_groups > M3CV_MAX_LEVEL_GROUPS)
        return 0;
    if ((uint64_t)m3cv_model_contexts(m) * m->vocab > M3CV_MAX_TABLE_ENTRIES)
        return 0;
    uint32_t limit = m->classes ? m->classes : 1;
    for (uint32_t s = 0; s < m->vocab; s++)
        if (m->symbol_class[s] >= limit)
            return 0;
    return 1;
}

int m3cv_model_check(const m3cv_model *m)
{
    if (!params_ok(m))
        return M3CV_ERR_MODEL;
    uint32_t contexts = m3cv_model_contexts(m), total = 1u << m->precision;
    for (uint32_t c = 0; c < contexts; c++) {
        const uint32_t *row = m->cum + (size_t)c * (m->vocab + 1);
        if (row[0] != 0 || row[m->vocab] != total)
            return M3CV_ERR_MODEL;
        for (uint32_t s = 0; s < m->vocab; s++)
            if (row[s + 1] <= row[s])
                return M3CV_ERR_MODEL;
    }
    return M3CV_OK;
}

static int shape_ok(uint32_t levels, uint32_t height, uint32_t width)
{
    return (uint64_t)levels * height * width <= M3CV_MAX_SYMBOLS;
}

/* Context of token (l, y, x): docs/entropy.md "Context rule". */
static inline uint32_t context_of(const m3cv_model *m, const uint16_t *grid, size_t i, uint32_t l, uint32_t y,
                                  uint32_t x, uint32_t width)
{
    uint32_t k = m->classes, g = l < m->level_groups ? l : m->level_groups - 1;
    if (k == 0)
        return g;
    uint32_t a = x > 0 ? m->symbol_class[grid[i - 1]] : k;
    uint32_t b = y > 0 ? m->symbol_class[grid[i - width]] : k;
    return (g * (k + 1) + a) * (k + 1) + b;
}

int m3cv_tokens_encode(const m3cv_model *m, const uint16_t *grid, uint32_t levels, uint32_t height, uint32_t width,
                       uint8_t *out, size_t capacity, size_t *out_len)
{
    if (!params_ok(m))
        return M3CV_ERR_MODEL;
    if (!shape_ok(levels, height, width))
        return M3CV_ERR_SHAPE;
    size_t n = (size_t)levels * height * width;
    for (size_t i = 0; i < n; i++)
        if (grid[i] >= m->vocab)
            return M3CV_ERR_SYMBOL;
    const uint32_t p = m->precision, row = m->vocab + 1;
    const uint32_t x_max_unit = (M3CV_RANS_L >> p) << 8;
    uint8_t *ptr = out + capacity;
    uint32_t state = M3CV_RANS_L;
    size_t i = n;
    for (uint32_t l = levels; l-- > 0;)
        for (uint32_t y = height; y-- > 0;)
            for (uint32_t x = width; x-- > 0;) {
                i--;
                const uint32_t *c = m->cum + (size_t)context_of(m, grid, i, l, y, x, width) * row;
                uint32_t s = grid[i], start = c[s], freq = c[s + 1] - start;
                if (freq == 0 || freq > (1u << p))
                    return M3CV_ERR_MODEL;
                uint32_t x_max = x_max_unit * freq;
                while (state >= x_max) {
                    if (ptr == out)
                        return M3CV_ERR_CAPACITY;
                    *--ptr = (uint8_t)(state & 0xFFu);
                    state >>= 8;
                }
                state = ((state / freq) << p) + (state % freq) + start;
            }
    if ((size_t)(ptr - out) < 4)
        return M3CV_ERR_CAPACITY;
    ptr -= 4;
    ptr[0] = (uint8_t)state;
    ptr[1] = (uint8_t)(state >> 8);
    ptr[2] = (uint8_t)(state >> 16);
    ptr[3] = (uint8_t)(state >> 24);
    *out_len = (size_t)(out + capacity - ptr);
    memmove(out, ptr, *out_len);
    return M3CV_OK;
}

int m3cv_tokens_decode(const m3cv_model *m, const uint8_t *data, size_t len, uint16_t *grid, uint32_t levels,
                       uint32_t height, uint32_t width)
{
    if (!params_ok(m))
        return M3CV_ERR_MODEL;
    if (!shape_ok(levels, height, width))
        return M3CV_ERR_SHAPE;
    if (len < 4)
        return M3CV_ERR_TRUNCATED;
    uint32_t state = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    if (state < M3CV_RANS_L || state >= (M3CV_RANS_L << 8))
        return M3CV_ERR_CORRUPT;
    const uint32_t p = m->precision, mask = (1u << p) - 1, row = m->vocab + 1;
    const uint16_t *buckets = m->bucket_bits >= 1 && m->bucket_bits <= p ? m->bucket_first : NULL;
    const uint32_t bucket_shift = buckets ? p - m->bucket_bits : 0, bucket_row = buckets ? (1u << m->bucket_bits) + 1 : 0;
    size_t pos = 4, i = 0;
    for (uint32_t l = 0; l < levels; l++)
        for (uint32_t y = 0; y < height; y++)
            for (uint32_t x = 0; x < width; x++, i++) {
                uint32_t ctx = context_of(m, grid, i, l, y, x, width);
                const uint32_t *c = m->cum + (size_t)ctx * row;
                /* branchless search for the largest lo with c[lo] <= slot; the answer stays in [lo, lo + n) */
                uint32_t slot = state & mask, lo = 0, n = m->vocab;
                if (buckets) {
                    const uint16_t *first = buckets + (size_t)ctx * bucket_row + (slot >> bucket_shift);
                    if (first[0] <= first[1] && first[1] < m->vocab) {
                        lo = first[0];
                        n = (uint32_t)first[1] - lo + 1;
                    }
                }
                while (n > 1) {
                    uint32_t half = n >> 1;
                    lo = c[lo + half] <= slot ? lo + half : lo;
                    n -= half;
                }
                uint32_t start = c[lo];
                state = (c[lo + 1] - start) * (state >> p) + slot - start;
                while (state < M3CV_RANS_L) {
                    if (pos >= len)
                        return M3CV_ERR_TRUNCATED;
                    state = (state << 8) | data[pos++];
                }
                grid[i] = (uint16_t)lo;
            }
    if (state != M3CV_RANS_L || pos != len)
        return M3CV_ERR_CORRUPT;
    return M3CV_OK;
}
