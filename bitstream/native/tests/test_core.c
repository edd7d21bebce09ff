/* C unit tests of m3cvcore: `m3cv_core_tests NAME` runs one test (registered with ctest), no name runs all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "m3cvcore.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static uint32_t crc_bytewise(const uint8_t *d, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--) {
        c ^= *d++;
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static void test_crc32c(void)
{
    CHECK(m3cv_crc32c(0, (const uint8_t *)"123456789", 9) == 0xE3069283u);
    CHECK(m3cv_crc32c(0, NULL, 0) == 0);
    uint8_t zeros[32] = {0}, buf[1000];
    CHECK(m3cv_crc32c(0, zeros, 32) == 0x8A9136AAu);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)next_u32();
    for (size_t n = 0; n <= sizeof buf; n += 37) {
        uint32_t whole = m3cv_crc32c(0, buf, n);
        CHECK(whole == crc_bytewise(buf, n));
        size_t cut = n / 3;
        CHECK(m3cv_crc32c(m3cv_crc32c(0, buf, cut), buf + cut, n - cut) == whole);
    }
}

/* A model whose tables give symbol s of context c a frequency from `weight`, every symbol >= 1. */
typedef struct {
    m3cv_model m;
    uint8_t *cls;
    uint32_t *cum;
    uint16_t *buckets;
} owned_model;

static owned_model make_model(uint32_t vocab, uint32_t precision, uint32_t classes, uint32_t groups, int skew)
{
    owned_model o;
    o.m.vocab = vocab;
    o.m.precision = precision;
    o.m.classes = classes;
    o.m.level_groups = groups;
    o.cls = malloc(vocab);
    for (uint32_t s = 0; s < vocab; s++)
        o.cls[s] = (uint8_t)(classes ? s % classes : 0);
    o.m.symbol_class = o.cls;
    uint32_t contexts = m3cv_model_contexts(&o.m), total = 1u << precision;
    o.cum = malloc(sizeof(uint32_t) * contexts * (vocab + 1));
    for (uint32_t c = 0; c < contexts; c++) {
        uint32_t *row = o.cum + (size_t)c * (vocab + 1), spare = total - vocab;
        row[0] = 0;
        for (uint32_t s = 0; s < vocab; s++) {
            /* skew: the context's favourite symbol takes most of the spare mass, the rest keep freq 1 */
            uint32_t extra = 0;
            if (skew && s == (c * 7u) % vocab)
                extra = spare;
            else if (!skew)
                extra = spare / vocab + (s < spare % vocab);
            row[s + 1] = row[s] + 1 + extra;
        }
    }
    o.m.cum = o.cum;
    o.m.bucket_first = o.buckets = NULL;
    o.m.bucket_bits = 0;
    CHECK(m3cv_model_check(&o.m) == M3CV_OK);
    return o;
}

/* The decoder's optional bucket index (see m3cvcore.h), by linear scan. */
static void add_buckets(owned_model *o, uint32_t bits)
{
    uint32_t contexts = m3cv_model_contexts(&o->m), per = (1u << bits) + 1, shift = o->m.precision - bits;
    o->buckets = malloc(sizeof(uint16_t) * contexts * per);
    for (uint32_t c = 0; c < contexts; c++) {
        const uint32_t *row = o->cum + (size_t)c * (o->m.vocab + 1);
        for (uint32_t j = 0; j < per; j++) {
            uint32_t slot = j + 1 < per ? j << shift : (1u << o->m.precision) - 1, s = 0;
            while (row[s + 1] <= slot)
                s++;
            o->buckets[(size_t)c * per + j] = (uint16_t)s;
        }
    }
    o->m.bucket_first = o->buckets;
    o->m.bucket_bits = bits;
}

static void free_model(owned_model *o)
{
    free(o->cls);
    free(o->cum);
    free(o->buckets);
}

static void round_trip(const owned_model *o, const uint16_t *grid, uint32_t l, uint32_t h, uint32_t w,
                       size_t *encoded_len)
{
    size_t n = (size_t)l * h * w, cap = m3cv_encode_bound(n), len = 0;
    uint8_t *out = malloc(cap);
    uint16_t *back = malloc(sizeof(uint16_t) * (n ? n : 1));
    CHECK(m3cv_tokens_encode(&o->m, grid, l, h, w, out, cap, &len) == M3CV_OK);
    CHECK(len >= 4 && len <= cap);
    CHECK(m3cv_tokens_decode(&o->m, out, len, back, l, h, w) == M3CV_OK);
    CHECK(n == 0 || memcmp(back, grid, n * sizeof(uint16_t)) == 0);
    CHECK(m3cv_tokens_decode(&o->m, out, len - 1, back, l, h, w) != M3CV_OK);
    if (encoded_len)
        *encoded_len = len;
    free(out);
    free(back);
}

static void test_rans_empty_and_single(void)
{
    owned_model o = make_model(1, 16, 0, 1, 0);
    uint16_t grid[64] = {0};
    size_t len;
    round_trip(&o, grid, 0, 5, 5, &len);
    CHECK(len == 4);
    round_trip(&o, grid, 1, 8, 8, &len);
    CHECK(len == 4); /* a certain symbol costs nothing */
    free_model(&o);
    owned_model two = make_model(2, 1, 1, 1, 0);
    uint16_t one[1] = {1};
    round_trip(&two, one, 1, 1, 1, NULL);
    free_model(&two);
}

static void test_rans_max_vocab(void)
{
    owned_model o = make_model(M3CV_MAX_VOCAB, 16, 0, 1, 0);
    uint32_t n = 20000;
    uint16_t *grid = malloc(n * sizeof(uint16_t));
    for (uint32_t i = 0; i < n; i++)
        grid[i] = (uint16_t)(next_u32() % M3CV_MAX_VOCAB);
    grid[0] = M3CV_MAX_VOCAB - 1;
    size_t len;
    round_trip(&o, grid, 1, 1, n, &len);
    CHECK(len * 8 < (size_t)n * 14 + 64); /* uniform tables: 14 bits/symbol */
    uint16_t bad = M3CV_MAX_VOCAB;
    uint8_t out[8];
    CHECK(m3cv_tokens_encode(&o.m, &bad, 1, 1, 1, out, sizeof out, &len) == M3CV_ERR_SYMBOL);
    free(grid);
    free_model(&o);
}

static void test_rans_freq_one_symbols(void)
{
    /* skewed tables: every symbol but one per context has freq 1, and the grid uses mostly those */
    owned_model o = make_model(5000, 16, 4, 2, 1);
    uint32_t l = 3, h = 17, w = 23, n = l * h * w;
    uint16_t *grid = malloc(n * sizeof(uint16_t));
    for (uint32_t i = 0; i < n; i++)
        grid[i] = (uint16_t)(next_u32() % 5000);
    size_t len;
    round_trip(&o, grid, l, h, w, &len);
    CHECK(len <= m3cv_encode_bound(n));
    uint8_t small[16];
    CHECK(m3cv_tokens_encode(&o.m, grid, l, h, w, small, sizeof small, &len) == M3CV_ERR_CAPACITY);
    free(grid);
    free_model(&o);
}

static void test_rans_context_grids(void)
{
    const uint32_t shapes[][3] = {{1, 1, 1}, {1, 1, 9}, {1, 9, 1}, {2, 8, 8}, {4, 64, 64}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        owned_model o = make_model(300, 12, 7, 3, (int)(k & 1));
        uint32_t n = shapes[k][0] * shapes[k][1] * shapes[k][2];
        uint16_t *grid = malloc(n * sizeof(uint16_t));
        for (uint32_t i = 0; i < n; i++)
            grid[i] = (uint16_t)(next_u32() % 300);
        round_trip(&o, grid, shapes[k][0], shapes[k][1], shapes[k][2], NULL);
        add_buckets(&o, k % 2 ? 12 : 5); /* the bucket index changes nothing but speed */
        round_trip(&o, grid, shapes[k][0], shapes[k][1], shapes[k][2], NULL);
        free(grid);
        free_model(&o);
    }
}

static void test_rans_corrupt_streams(void)
{
    /* skewed tables: a corruption changes the state trajectory, so the final-state check rejects it (near-uniform
     * tables act like bit packing, where a flipped byte just decodes to other symbols: the unit CRC catches those) */
    owned_model o = make_model(64, 10, 3, 1, 1);
    add_buckets(&o, 4);
    uint32_t n = 2000;
    uint16_t grid[2000], back[2000];
    for (uint32_t i = 0; i < n; i++)
        grid[i] = (uint16_t)(next_u32() % 2 ? next_u32() % 64 : (i % 3) * 7);
    uint8_t out[4 + 2 * 2000], mutated[4 + 2 * 2000];
    size_t len;
    CHECK(m3cv_tokens_encode(&o.m, grid, 1, 40, 50, out, sizeof out, &len) == M3CV_OK);
    int rejected = 0;
    for (int trial = 0; trial < 2000; trial++) {
        memcpy(mutated, out, len);
        mutated[next_u32() % len] ^= (uint8_t)(1 + next_u32() % 255);
        size_t cut = trial % 3 ? len : next_u32() % len;
        rejected += m3cv_tokens_decode(&o.m, mutated, cut, back, 1, 40, 50) != M3CV_OK;
    }
    CHECK(rejected > 1900); /* the final-state check catches nearly every corruption */
    for (int trial = 0; trial < 500; trial++) {
        size_t rlen = next_u32() % 64;
        for (size_t i = 0; i < rlen; i++)
            mutated[i] = (uint8_t)next_u32();
        int rc = m3cv_tokens_decode(&o.m, mutated, rlen, back, 1, 40, 50);
        CHECK(rc == M3CV_OK || rc == M3CV_ERR_TRUNCATED || rc == M3CV_ERR_CORRUPT);
    }
    CHECK(m3cv_tokens_decode(&o.m, out, 3, back, 1, 40, 50) == M3CV_ERR_TRUNCATED);
    for (size_t j = 0; j < 16 * 17; j++) /* a garbage bucket index must not break memory safety */
        o.buckets[j] = (uint16_t)next_u32();
    for (int trial = 0; trial < 200; trial++) {
        int rc = m3cv_tokens_decode(&o.m, out, len - (size_t)(trial % 5), back, 1, 40, 50);
        CHECK(rc == M3CV_OK || rc == M3CV_ERR_TRUNCATED || rc == M3CV_ERR_CORRUPT);
    }
    CHECK(m3cv_tokens_decode(&o.m, out, len, back, 1, 1u << 12, 1u << 11) == M3CV_ERR_SHAPE);
    free_model(&o);
}

static void test_model_check(void)
{
    owned_model o = make_model(16, 8, 2, 1, 0);
    o.cum[5] = o.cum[4]; /* a zero frequency */
    CHECK(m3cv_model_check(&o.m) == M3CV_ERR_MODEL);
    o.cum[5] = o.cum[4] + 1;
    o.cls[3] = 2; /* class out of range */
    CHECK(m3cv_model_check(&o.m) == M3CV_ERR_MODEL);
    o.cls[3] = 1;
    o.m.vocab = 300; /* more symbols than 2^precision */
    CHECK(m3cv_model_check(&o.m) == M3CV_ERR_MODEL);
    free_model(&o);
}

static const struct {
    const char *name;
    void (*fn)(void);
} tests[] = {
    {"crc32c", test_crc32c},
    {"rans_empty_and_single", test_rans_empty_and_single},
    {"rans_max_vocab", test_rans_max_vocab},
    {"rans_freq_one_symbols", test_rans_freq_one_symbols},
    {"rans_context_grids", test_rans_context_grids},
    {"rans_corrupt_streams", test_rans_corrupt_streams},
    {"model_check", test_model_check},
};

int main(int argc, char **argv)
{
    int ran = 0;
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
        if (argc < 2 || strcmp(argv[1], tests[i].name) == 0) {
            tests[i].fn();
            printf("ok %s\n", tests[i].name);
            ran++;
        }
    if (!ran) {
        fprintf(stderr, "unknown test %s\n", argv[1]);
        return 2;
    }
    return 0;
}
