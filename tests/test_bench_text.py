"""bench/text.py: the schemes it measures compress what it says, and its TEXT-unit row is the real unit payload."""
import pytest

from m3cvcav.bench import text as bench
from m3cvcav.bench._vlm_descriptions import PAIRS
from m3cvcav.bitstream.units import decode_text, text_payload
from m3cvcav.core.errors import UsageError


@pytest.fixture(scope="module")
def rows():
    return bench.measure(PAIRS)


def test_raw_and_text_unit_rows_are_exact(rows):
    n = 2 * len(PAIRS)
    assert rows["raw UTF-8"]["alone"] == sum(len(t.encode()) for p in PAIRS for t in p) / n
    unit = rows["brotli q11 lgwin 16 TEXT (the TEXT unit's scheme)"]["paired"]
    assert unit == sum(len(text_payload(f, c)) for f, c in PAIRS) / n
    assert all(decode_text(text_payload(f, c)) == (f, c) for f, c in PAIRS)


def test_paragraphs_compress_and_pairing_helps(rows):
    raw = rows["raw UTF-8"]["alone"]
    for name, row in rows.items():
        if name != "raw UTF-8":
            assert row["alone"] < raw and row["paired"] < row["alone"], name
    assert set(rows) == set(bench.SCHEMES) | set(bench.DICTIONARIES.values())


def test_plain_is_the_text_unit_plaintext():
    import brotli
    pair = PAIRS[0]
    assert brotli.decompress(text_payload(*pair)) == bench.plain(pair)


def test_dictionaries_round_trip_and_shrink_similar_text():
    texts = [t for p in PAIRS[1:] for t in p]
    sample = PAIRS[0][0].encode()
    for kind in bench.DICTIONARIES:
        with_dict = bench._zstd(minimal=True, dictionary=bench.train(texts, kind))  # raises unless it round-trips
        assert with_dict(sample) < bench._zstd(minimal=True)(sample)


def test_table_and_missing_media(rows, tmp_path):
    lines = bench.table({"sets": {"vlm": {"descriptions": 20, "bytes_per_description": rows}}}).splitlines()
    assert lines[0] == "| scheme | vlm (20), alone | vlm (20), paired |"
    assert len(lines) == 2 + len(bench.SCHEMES) + len(bench.DICTIONARIES)
    assert lines[2].startswith("| raw UTF-8 | ") and "(100 %)" in lines[2]
    with pytest.raises(UsageError, match="absent"):
        bench.label_pairs(tmp_path / "nothing")
