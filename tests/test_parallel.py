"""Chunked encode and run-parallel decode (docs/parallel.md): the plan, renumbering, the scheduler's retries and order,
byte-identical streams whatever ran them, frame counts, faults, Ctrl-C/SIGTERM and -resume."""
from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import time
from fractions import Fraction

import av
import numpy as np
import pytest

import m3cvcav
from m3cvcav import chunks, parallel, workers
from m3cvcav.bitstream.containers import open_reader
from m3cvcav.bitstream.containers.m3cv import read_seek_index
from m3cvcav.bitstream.units import (SCENE_CUT, KeyframeTokens, Segment, SegmentHeader, decode_segment,
                                     encode_segment)
from m3cvcav.core.errors import M3cvError, UsageError
from m3cvcav.filters.items import Frame
from helpers import encoder_mid_write, error_line
from parallel_tasks import always_dies, bad_option, dies_once, sleepy

pytestmark = pytest.mark.slow  # jobs on worker processes and Ray: not in the fast subset

SIZE = "128x72"
FRAMES = 20
CHUNK = 10  # two chunks of 10 frames


# -- the plan and the bytes (no workers) ------------------------------------------------------------------------------

def _scenes(lengths: list[int], size=(36, 64)) -> list[Frame]:
    """Frames of a few 'scenes' (each a different random image, moving a pixel a frame)."""
    rng = np.random.default_rng(7)
    frames = []
    for n, length in enumerate(lengths):
        low = (0, 150, 40, 170)[n % 4]  # scenes differ in content and in brightness
        base = rng.integers(low, low + 85, (size[0], size[1] + 64, 3), dtype=np.uint8)
        base = np.repeat(np.repeat(base[::8, ::8], 8, 0), 8, 1)[:size[0], :size[1] + 64]
        for i in range(length):
            frames.append(Frame(np.ascontiguousarray(base[:, i:i + size[1]]), len(frames) * 2, Fraction(1, 50),
                                len(frames)))
    return frames


def test_plan_cuts_at_scene_cuts_within_bounds_and_is_frame_exact():
    frames = _scenes([12, 3, 30, 9])
    plan = list(chunks.plan(frames, chunks.Bounds(5, 20, Fraction(25))))
    starts = [c.start for c in plan]
    # cut at 12 (a scene change after ≥5 frames); 15 is too close to open one; 15 + 20 = 35 forced; 45 a cut
    assert starts == [0, 12, 32, 45]
    assert [c.cut for c in plan] == [False, True, False, True]
    assert sum(c.frames for c in plan) == len(frames)
    assert [p for c in plan for p in c.pts] == [f.pts for f in frames]
    assert all(np.array_equal(c.images[i], frames[c.start + i].image) for c in plan for i in range(c.frames))
    assert max(c.frames for c in plan) <= 20


def test_plan_bounds_are_checked():
    with pytest.raises(UsageError, match="chunk_min"):
        list(chunks.plan(_scenes([4]), chunks.Bounds(10, 5, Fraction(25))))


def test_renumber_rewrites_the_header_and_pts_only():
    tokens = KeyframeTokens(1, 2, (1, 2, 2), (36, 64), b"\x01\x02\x03")
    seg = Segment(SegmentHeader(0, 0, 3, 0, 0), tokens, "frame text", "clip text", frame_pts=[0, 2, 7])
    packet = encode_segment(seg)
    out = chunks.renumber(packet, 41, 1000, scene_cut=True)
    back = decode_segment(out)
    assert (back.header.index, back.header.first_pts, back.header.frame_count) == (41, 1000, 3)
    assert back.header.flags & SCENE_CUT
    assert back.frame_pts == [1000, 1002, 1007]
    assert back.tokens == tokens and (back.frame_text, back.clip_text) == ("frame text", "clip text")
    assert packet[len(encode_segment(Segment(seg.header))):][:40] in out  # later units kept as they were


# -- the scheduler (light tasks) ------------------------------------------------------------------------------------

def test_results_come_back_in_task_order_and_a_killed_worker_is_retried(tmp_path):
    marker = str(tmp_path / "died")
    tasks = [workers.Task(k, dies_once if k == 1 else sleepy, {"key": k, "sleep": 0.4 - 0.1 * k, "marker": marker})
             for k in range(4)]
    counters = workers.Counters()
    got = [result for _, result in workers.run_ordered(workers.LocalPool(2), iter(tasks), counters=counters)]
    assert got == [0, 1, 2, 3]
    assert os.path.exists(marker) and counters.retried == 1


def test_retries_are_bounded_and_task_errors_are_not_retried():
    counters = workers.Counters()
    with pytest.raises(workers.TaskFailed, match="chunk 0 failed 3 times"):
        list(workers.run_ordered(workers.LocalPool(1), iter([workers.Task(0, always_dies, {})]),
                                 counters=counters))
    assert counters.retried == 2
    with pytest.raises(UsageError, match="bad option"):
        list(workers.run_ordered(workers.LocalPool(1), iter([workers.Task(0, bad_option, {})])))


def test_bad_parallel_options_are_one_line_usage_errors(capsys, tmp_path):
    from m3cvcav.__main__ import main

    out = str(tmp_path / "x.m3cv")
    assert main(["-i", "in.mp4", "-resume", "w", out]) == 2
    assert "add -workers N or -cluster local" in capsys.readouterr().err
    assert main(["-i", "in.mp4", "-workers", "two", out]) == 2
    with pytest.raises(UsageError, match="-workers -1"):
        workers.make_pool(-1)
    if importlib.util.find_spec("ray"):
        with pytest.raises(UsageError, match="give local, auto or ray://HOST:PORT"):
            workers.make_pool(2, "bogus")
    assert not list(tmp_path.iterdir())


def test_cluster_without_ray_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=r"pip install 'm3cvcav\[cluster\]'"):
        workers.make_pool(2, "local")


# -- end to end -------------------------------------------------------------------------------------------------------

def _encode(src, dst, **kw):
    return m3cvcav.encode(src, dst, size=SIZE, frames=FRAMES, overwrite=True, chunk_max=CHUNK, **kw)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from helpers import media_path

    return media_path("clips/vtest.avi")


@pytest.fixture(scope="module")
def reference(clip, tmp_path_factory):
    """The stream from -workers 2 and from -workers 1 (and the Result of the first)."""
    folder = tmp_path_factory.mktemp("par")
    two = _encode(clip, folder / "w2.m3cv", workers=2)
    _encode(clip, folder / "w1.m3cv", workers=1)
    return folder, two


def test_workers_1_and_2_write_the_same_bytes_with_exact_frames(reference):
    folder, result = reference
    assert (folder / "w2.m3cv").read_bytes() == (folder / "w1.m3cv").read_bytes()
    assert result.frames == FRAMES
    with open_reader(folder / "w2.m3cv") as reader:
        heads = [decode_segment(p).header for p in reader.packets()]
    assert sum(h.frame_count for h in heads) == FRAMES
    assert [h.index for h in heads] == list(range(len(heads)))  # renumbered
    pts = [p for h in heads for p in range(h.first_pts, h.first_pts + h.frame_count)]
    assert pts == list(range(FRAMES))  # 10 fps, time base 1/10: the chunks' pts back in place
    assert len(read_seek_index(folder / "w2.m3cv")) == len(heads)  # one seekable stream


def test_parallel_decode_equals_serial_decode(reference):
    folder, _ = reference
    with m3cvcav.open(folder / "w2.m3cv") as stream:
        serial = [(f.pts, f.image) for f in stream.frames()]
    with parallel.ParallelDecoder(folder / "w2.m3cv", workers_n=2, chunk_frames=6) as stream:
        chunks = list(stream._chunks())
    with parallel.ParallelDecoder(folder / "w2.m3cv", workers_n=2, chunk_frames=6) as stream:
        spread = [(f.pts, f.image) for f in stream.frames()]
    assert len(chunks) >= 2
    assert len(spread) == len(serial) == FRAMES
    assert all(a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(serial, spread))


def test_parallel_decode_conceals_a_damaged_segment_as_a_serial_decode(clip, tmp_path):
    stream = tmp_path / "short_segments.m3cv"
    m3cvcav.encode(clip, stream, size=SIZE, frames=FRAMES, vf="select=max=4")
    index = read_seek_index(stream)
    assert len(index) >= 4
    data = bytearray(stream.read_bytes())
    start, end = index[2][0], index[3][0]
    data[(start + end) // 2] ^= 0xFF  # damage the third segment
    stream.write_bytes(bytes(data))
    with m3cvcav.open(stream) as serial_stream:
        serial = [(f.pts, f.image) for f in serial_stream.frames()]
    with parallel.ParallelDecoder(stream, workers_n=2, chunk_frames=4) as spread_stream:
        spread = [(f.pts, f.image) for f in spread_stream.frames()]
        assert spread_stream.corrupt == 1
    assert [pts for pts, _ in spread] == [pts for pts, _ in serial]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(serial, spread))


def _dying_encode_chunk(job):
    """encode_chunk, but the worker running chunk 1 dies the first time (as if the OS killed it)."""
    marker = os.environ["M3CVC_TEST_DIE_MARKER"]
    if job["index"] == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return parallel.encode_chunk(job)


def _failing_encode_chunk(job):
    if job["index"] == 1:
        raise M3cvError("chunk 1 cannot be encoded")
    return parallel.encode_chunk(job)


def test_a_worker_killed_mid_job_is_retried_and_the_stream_is_the_same(reference, clip, tmp_path, monkeypatch):
    folder, _ = reference
    monkeypatch.setenv("M3CVC_TEST_DIE_MARKER", str(tmp_path / "died"))
    monkeypatch.setattr(parallel, "encode_chunk", _dying_encode_chunk)
    _encode(clip, tmp_path / "killed.m3cv", workers=2)
    assert (tmp_path / "died").exists()
    assert (tmp_path / "killed.m3cv").read_bytes() == (folder / "w2.m3cv").read_bytes()


def test_resume_continues_an_interrupted_job(reference, clip, tmp_path, monkeypatch, caplog):
    folder, _ = reference
    work = tmp_path / "work"
    with monkeypatch.context() as patch:
        patch.setattr(parallel, "encode_chunk", _failing_encode_chunk)
        with pytest.raises(M3cvError, match="chunk 1 cannot"):
            _encode(clip, tmp_path / "out.m3cv", workers=1, resume=str(work))  # one worker: chunk 0 finishes first
    assert not (tmp_path / "out.m3cv").exists() and not list(tmp_path.glob(".out.m3cv*"))
    kept = sorted(p.name for p in work.iterdir())
    assert len(kept) == 1 and kept[0].startswith("chunk_00000.")
    caplog.set_level(logging.INFO, logger="m3cvcav")
    _encode(clip, tmp_path / "out.m3cv", workers=2, resume=str(work))
    assert "chunk 0: reusing" in caplog.text and "chunk 1: reusing" not in caplog.text
    assert (tmp_path / "out.m3cv").read_bytes() == (folder / "w2.m3cv").read_bytes()
    assert not work.exists()  # cleared once the job succeeded


def test_stitched_mkv_keeps_audio_and_descriptions(media, tmp_path):
    out = tmp_path / "bbb.mkv"
    result = m3cvcav.encode(media("clips/bigbuckbunny.mp4"), out, size=SIZE, frames=16, chunk_max=8, workers=2,
                            overwrite=True)
    assert result.frames == 16
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1 and len(container.streams.subtitles) == 1
        audio = sum(1 for p in container.demux(container.streams.audio[0]) if p.size)
    assert audio > 10
    with open_reader(out) as reader:
        assert sum(decode_segment(p).header.frame_count for p in reader.packets()) == 16
    assert m3cvcav.decode(out, tmp_path / "back.y4m", workers=2, chunk_max=8, overwrite=True).frames == 16


def test_many_scene_cuts_open_chunks_flagged_as_cuts(tmp_path):
    frames = _scenes([5] * 5, size=(72, 128))
    out = tmp_path / "cuts.m3cv"
    result = m3cvcav.encode((f.image for f in frames), out, fps=25, workers=2, chunk_min=4, chunk_max=12)
    assert result.frames == len(frames)
    with open_reader(out) as reader:
        heads = [decode_segment(p).header for p in reader.packets()]
    assert sum(h.frame_count for h in heads) == len(frames)
    starts = {h.first_pts: h for h in heads}
    assert all(k * 5 in starts and starts[k * 5].flags & SCENE_CUT for k in range(1, 5))  # ArraySource: pts = index
    assert not heads[0].flags & SCENE_CUT


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_cancels_every_worker_and_leaves_nothing(tmp_path, sig):
    proc = encoder_mid_write(tmp_path, "out.m3cv", "-workers", "2", "-chunk_max", "10",
                             ready=lambda proc: len(workers.descendants(proc.pid)) >= 2)
    children = workers.descendants(proc.pid)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 128 + sig, err  # one signal path: 130 for Ctrl-C, 143 for SIGTERM, chunked or not
    assert ("interrupted" if sig == signal.SIGINT else "received SIGTERM") in error_line(err.encode())
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")], "a worker outlived the job"


# -- Ray (slow to start: one local instance for the module) ------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="pip install 'm3cvcav[cluster]' to test the Ray path")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_cluster_local_writes_the_same_bytes_and_decodes_the_same(reference, clip, tmp_path, ray_local):
    folder, _ = reference
    _encode(clip, tmp_path / "ray.m3cv", cluster="local", workers=2)
    assert (tmp_path / "ray.m3cv").read_bytes() == (folder / "w2.m3cv").read_bytes()
    with m3cvcav.open(folder / "w2.m3cv") as stream:
        serial = [f.image for f in stream.frames()]
    with parallel.ParallelDecoder(folder / "w2.m3cv", cluster="local", workers_n=2, chunk_frames=6) as stream:
        spread = [f.image for f in stream.frames()]
    assert len(spread) == FRAMES and all(np.array_equal(a, b) for a, b in zip(serial, spread))
