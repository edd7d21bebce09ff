"""cffi API-mode builder of ``m3cvcav.bitstream._m3cvcore`` from the C sources beside this file (used by setup.py)."""
from __future__ import annotations

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ["crc32c.c", "leb128.c", "rans.c"]


def _relative(path: Path) -> str:
    """setuptools wants source paths relative to the project root (the folder holding setup.py)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


ffibuilder = FFI()
ffibuilder.cdef(
    """
    typedef struct {
        uint32_t vocab;
        uint32_t precision;
        uint32_t classes;
        uint32_t level_groups;
        const uint8_t *symbol_class;
        const uint32_t *cum;
        const uint16_t *bucket_first;
        uint32_t bucket_bits;
    } m3cv_model;
    #define M3CV_ABI_VERSION ...
    uint32_t m3cv_abi_version(void);
    uint32_t m3cv_crc32c(uint32_t value, const uint8_t *data, size_t len);
    size_t m3cv_leb128_write(uint64_t value, uint8_t *out);
    int m3cv_leb128_read(const uint8_t *data, size_t len, size_t max_bytes, uint64_t *value, size_t *used);
    uint32_t m3cv_model_contexts(const m3cv_model *model);
    int m3cv_model_check(const m3cv_model *model);
    size_t m3cv_encode_bound(size_t n);
    int m3cv_tokens_encode(const m3cv_model *model, const uint16_t *grid, uint32_t levels, uint32_t height,
                           uint32_t width, uint8_t *out, size_t capacity, size_t *out_len);
    int m3cv_tokens_decode(const m3cv_model *model, const uint8_t *data, size_t len, uint16_t *grid,
                           uint32_t levels, uint32_t height, uint32_t width);
    """
)
ffibuilder.set_source(
    "m3cvcav.bitstream._m3cvcore",
    '#include "m3cvcore.h"',
    sources=[_relative(HERE / name) for name in SOURCES],
    include_dirs=[_relative(HERE)],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
