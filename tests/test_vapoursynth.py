"""The VapourSynth source (m3cvcav.vs, docs/media-frameworks.md): vspipe's frames are the CLI's, in order and by
random access (a .vpy reading the last frame before frame 0), with the stream's rate and colour props; and
``SeekableDecoder`` (what it decodes with) against a serial decode, which needs no VapourSynth."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest


FRAME = 192 * 108 * 3 // 2


@pytest.fixture(scope="module")
def stream(framework_stream):
    return framework_stream


@pytest.fixture(scope="module")
def vspipe():
    from m3cvcav import vs

    path = vs.vspipe()
    if path is None:
        pytest.skip(f"VapourSynth is not set up in {vs.default_home()}: python3 -m m3cvcav vs setup (needs a Python "
                    ">= 3.12 for VapourSynth's wheels; .ci/setup.sh runs it)")
    return path


def test_seekable_decoder_matches_serial_decode(stream):
    import m3cvcav
    from m3cvcav.filters.access import SeekableDecoder, to_yuv

    with m3cvcav.open(stream) as reader:
        serial = [(f.image, f.pts) for f in reader.frames()]
    with SeekableDecoder(stream, cache=1) as decoder:
        assert decoder.frame_count == len(serial) == 100 and [e.first_frame for e in decoder.entries] == [0, 25, 50, 75]
        for n in [99, 0, 60, 26, 25, 24, 99]:  # backwards, across segments, and back again with one cached
            frame = decoder.frame(n)
            assert np.array_equal(frame.image, serial[n][0]) and frame.pts == serial[n][1], n
        reference = np.fromfile(stream.parent / "cli.yuv", np.uint8).reshape(-1, FRAME)
        planes = to_yuv(decoder.frame(7), decoder.header.color)
        assert np.array_equal(np.concatenate([p.ravel() for p in planes]), reference[7])  # the CLI's conversion
        with pytest.raises(IndexError):
            decoder.frame(100)


@pytest.mark.slow
def test_vspipe_frames_equal_the_cli_decode(stream, vspipe, tmp_path):
    script = tmp_path / "s.vpy"
    script.write_text(f"import m3cvcav.vs\nm3cvcav.vs.source({str(stream)!r}).set_output()\n")
    raw = tmp_path / "vs.yuv"
    run = subprocess.run([str(vspipe), str(script), str(raw)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert raw.read_bytes() == (stream.parent / "cli.yuv").read_bytes()
    y4m = subprocess.run([str(vspipe), str(script), "-c", "y4m", "-e", "0", "-"], capture_output=True, timeout=300)
    assert y4m.returncode == 0 and y4m.stdout.startswith(b"YUV4MPEG2 C420 W192 H108 F25:1 Ip"), y4m.stderr


def test_vpy_random_access_and_props(stream, vspipe, tmp_path):
    script = tmp_path / "random.vpy"
    script.write_text(f"""
import numpy as np
import m3cvcav.vs
clip = m3cvcav.vs.source({str(stream)!r}, cache=1)
reference = np.fromfile({str(stream.parent / "cli.yuv")!r}, np.uint8).reshape(clip.num_frames, -1)
assert (clip.num_frames, clip.fps.numerator, clip.fps.denominator) == (100, 25, 1)
for n in (99, 0, 51, 26, 25):  # the last frame before frame 0
    frame = clip.get_frame(n)
    planes = np.concatenate([np.asarray(frame[p]).ravel() for p in range(3)])
    assert np.array_equal(planes, reference[n]), n
    props = frame.props
    assert (props["_Matrix"], props["_Transfer"], props["_Primaries"]) == (1, 1, 1), dict(props)
    assert (props["_DurationNum"], props["_DurationDen"], props["_FieldBased"]) == (1, 25, 0), dict(props)
    assert abs(props["_AbsoluteTime"] - n / 25) < 1e-9
clip.std.BlankClip(length=1).set_output()
""")
    run = subprocess.run([str(vspipe), "--info", str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr


def test_missing_file_is_one_line_error(vspipe, tmp_path):
    script = tmp_path / "missing.vpy"
    script.write_text(f"import m3cvcav.vs\nm3cvcav.vs.source({str(tmp_path / 'nope.mkv')!r}).set_output()\n")
    run = subprocess.run([str(vspipe), "--info", str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "does not exist or is not a file" in run.stderr
