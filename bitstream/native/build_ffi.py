"""cffi API-mode builder of ``m3cvcav.bitstream._m3cvcore`` from the C sources beside this file (used by setup.py)."""
from __future__ import annotations

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ["crc32c.c", "rans.c"]


def _relative(path: Path) -> str:
    """setuptools wants source paths relative to the project root (the folder holding setup.py)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _declarations(header: Path) -> str:
    """The header as cffi ``cdef`` text: integer macros become ``#define NAME ...``, other preprocessor lines go."""
    lines = []
    for line in header.read_text().splitlines():
        if line.startswith("#define M3CV_"):
            lines.append(f"#define {line.split()[1]} ...")
        elif not line.startswith("#"):
            lines.append(line)
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_declarations(HERE / "m3cvcore.h"))
ffibuilder.set_source(
    "m3cvcav.bitstream._m3cvcore",
    '#include "m3cvcore.h"',
    sources=[_relative(HERE / name) for name in SOURCES],
    include_dirs=[_relative(HERE)],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
