/* m3cvcore: the native core of m3cvcav (CRC32C, static-context rANS token coder). See docs/entropy.md. */
#ifndef M3CVCORE_H
#define M3CVCORE_H

#include <stddef.h>
#include <stdint.h>

#define M3CV_ABI_VERSION 3u               /* bumped whenever a declaration below changes */
#define M3CV_RANS_L (1u << 23)            /* lower bound of the normalised rANS state */
#define M3CV_MAX_VOCAB 16384u             /* largest vocabulary */
#define M3CV_MIN_PRECISION 1u             /* table precision bits: sum of every table = 2^precision */
#define M3CV_MAX_PRECISION 16u
#define M3CV_MAX_CLASSES 255u             /* K: symbol classes (0 = order-0) */
#define M3CV_MAX_LEVEL_GROUPS 16u         /* G: tables per level group */
#define M3CV_MAX_TABLE_ENTRIES (1u << 24) /* contexts * vocab */
#define M3CV_MAX_SYMBOLS (1u << 22)       /* tokens per encode/decode call */

enum {
    M3CV_OK = 0,
    M3CV_ERR_MODEL = -1,     /* model parameters or tables invalid */
    M3CV_ERR_SHAPE = -2,     /* grid shape over the limits */
    M3CV_ERR_SYMBOL = -3,    /* a token outside the vocabulary (encoder) */
    M3CV_ERR_CAPACITY = -4,  /* output buffer too small (encoder) */
    M3CV_ERR_TRUNCATED = -5, /* stream ends before the decoder is done */
    M3CV_ERR_CORRUPT = -6    /* bad initial state, final state != L, or bytes left over */
};

/* A static context model. cum holds contexts() rows of vocab+1 entries: cum[0] = 0, strictly increasing,
 * cum[vocab] = 2^precision; the frequency of symbol s is cum[s+1] - cum[s].
 * Optional decoder speed-up (not normative, NULL to go without): with b = bucket_bits (1 <= b <= precision),
 * bucket_first holds contexts() rows of 2^b + 1 entries, row[j] = the symbol whose interval holds slot
 * j << (precision - b) (the last entry: the symbol holding slot 2^precision - 1). */
typedef struct {
    uint32_t vocab;
    uint32_t precision;
    uint32_t classes;      /* K */
    uint32_t level_groups; /* G */
    const uint8_t *symbol_class; /* vocab entries, each < max(K, 1) */
    const uint32_t *cum;
    const uint16_t *bucket_first;
    uint32_t bucket_bits;
} m3cv_model;

/* M3CV_ABI_VERSION of the built library (the Python loader refuses a stale build). */
uint32_t m3cv_abi_version(void);

uint32_t m3cv_crc32c(uint32_t value, const uint8_t *data, size_t len);

/* Number of contexts of a model: G * (K + 1)^2. */
uint32_t m3cv_model_contexts(const m3cv_model *model);
/* M3CV_OK when the parameters are within the limits and every table is valid. */
int m3cv_model_check(const m3cv_model *model);
/* Worst-case encoded size of n tokens: 4 + 2 * n bytes. */
size_t m3cv_encode_bound(size_t n);

/* Encode an (levels, height, width) grid in raster order. Writes *out_len bytes at the start of out. */
int m3cv_tokens_encode(const m3cv_model *model, const uint16_t *grid, uint32_t levels, uint32_t height,
                       uint32_t width, uint8_t *out, size_t capacity, size_t *out_len);
/* Decode exactly len bytes into grid (levels * height * width entries). */
int m3cv_tokens_decode(const m3cv_model *model, const uint8_t *data, size_t len, uint16_t *grid,
                       uint32_t levels, uint32_t height, uint32_t width);

#endif
