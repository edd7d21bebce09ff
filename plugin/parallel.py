"""Encode and decode in parallel (docs/parallel.md): chunks of the input encoded independently on workers and stitched
into one stream; chunks of segments decoded on workers and their frames put back in order.

The parent reads the input once (audio, -ss/-t/-frames:v and FFmpeg filters stay here), plans the chunks
(:mod:`m3cvcav.chunks`), ships each chunk's frames to a worker (:mod:`m3cvcav.workers`), and writes the coded segments
renumbered, in chunk order, behind one sequence header. The stream depends only on the input and the options.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from m3cvcav.filters.audio import AudioOptions
from m3cvcav.bitstream.containers.base import decode_packet
from m3cvcav.bitstream.containers.m3cv import units_intact
from m3cvcav.bitstream.containers.tags import BACKEND as BACKEND_TAG
from m3cvcav.bitstream.units import (SCENE_CUT, CorruptSegment, SequenceHeader, decode_sequence_header,
                                     encode_sequence_header, peek_segment_header)
from m3cvcav.core import __version__
from m3cvcav.core.atomic import check_output, write_bytes
from m3cvcav.core.errors import BitstreamError, InputError, ModelError, OutputError, UsageError
from m3cvcav.core.log import get_logger, to_stderr
from m3cvcav.core.log import logger as package_logger
from m3cvcav.engines.registry import DEFAULT_PROFILE, Engines, stream_profile
from m3cvcav.filters import pipeline
from m3cvcav.filters.decoder import StreamDecoder
from m3cvcav.filters.demux import Demux
from m3cvcav.filters.codec import VideoEncoder, open_decoder, stream_engines
from m3cvcav.filters.conditioning import stream_version
from m3cvcav.filters.items import AudioPacket, Frame, VideoInfo
from m3cvcav.filters.mux import Mux
from m3cvcav.filters.progress import ProgressCallback, Stats
from m3cvcav.filters.ratecontrol import RateControl
from m3cvcav.filters.result import Result
from m3cvcav.filters.result import log as result_log
from m3cvcav.filters.source import open_source

from . import chunks, workers

log = get_logger(__name__)

GPU_PROFILES_DEFAULT_WORKERS = 1  # profiles whose models want a GPU each: one local worker unless told otherwise


@dataclass
class ChunkStats(Stats):
    """Progress of a chunked job: the usual counters plus chunks done (of the total, when known) and retried."""

    chunks_done: int = 0
    chunks_total: int | None = None
    retried: int = 0
    chunk_seconds: list[float] = field(default_factory=list)  # each chunk's encode time on its worker

    def line(self) -> str:
        total = "?" if self.chunks_total is None else str(self.chunks_total)
        return f"{super().line()} chunks={self.chunks_done}/{total} retried={self.retried}"

    def pairs(self) -> dict[str, str]:
        return {**super().pairs(), "chunks_done": str(self.chunks_done), "chunks_retried": str(self.retried)}


def default_workers(profile_name: str) -> int:
    """One worker per core for CPU profiles; one for profiles whose models need a GPU each."""
    return (os.cpu_count() or 1) if profile_name == DEFAULT_PROFILE else GPU_PROFILES_DEFAULT_WORKERS


def make_pool(n: int, cluster: str | None, profile_name: str, engine: str = "auto", offload: bool = False,
              side: str | None = None, tasks: int | None = None):
    """The job's workers: Ray actors with ``cluster`` (a GPU each for GPU profiles, when the cluster has GPUs),
    else ``n`` local processes (0: the profile's default); each loads the engines of the profile's roles that
    ``side`` ("encoder" or "decoder") runs as it starts."""
    init = (load_engines, {"profile": profile_name, "engine": engine, "offload": offload, "side": side})
    if cluster:
        return workers.make_pool(n, cluster, gpus=0.0 if profile_name == DEFAULT_PROFILE else -1.0, init=init)
    return workers.make_pool(n or default_workers(profile_name), init=init, tasks=tasks)


def load_engines(job: dict) -> None:
    """Worker start-up: build the engines of the profile's roles that the job's side runs (``Profile.roles``),
    cached for every later chunk."""
    engines = Engines(job["profile"], job["engine"], job["offload"])
    for role in engines.profile.roles(job["side"]) if job["side"] else ():
        engines.engine(role)


# -- worker side ----------------------------------------------------------------------------------------------------

def encode_chunk(job: dict) -> dict:
    """Worker: encode one chunk's frames (pts from 0) with the codec core, as a serial encode does; return the
    sequence header unit, the segment packets and the engines' backends."""
    images, pts, tb, o = job["images"], job["pts"], job["time_base"], job["options"]
    _worker_logging(job.get("loglevel", logging.WARNING))
    started = time.perf_counter()
    engines = Engines(o.get("profile", DEFAULT_PROFILE), o.get("engine", "auto"), o.get("offload", False))
    rate = RateControl(target_bps=o.get("bitrate") or 0.0, quality=o.get("q"),
                       frame_overhead=o.get("frame_overhead", 0))
    codec = VideoEncoder(engines, plan=pipeline.plan(o.get("vf"), None, size=None, rate=None,
                                                     ours=pipeline.ENCODER_NODES),
                         rate=rate, mode=o.get("mode", "it2v"))
    height, width = images[0].shape[:2]
    header = codec.open(VideoInfo(width, height, Fraction(job["fps"]), tb, frame_count=len(pts)))
    segments = []
    for i, (image, p) in enumerate(zip(images, pts)):
        segments += codec.send(Frame(np.ascontiguousarray(image), p, tb, i))
        workers.report(i + 1)
    segments += codec.flush()
    coded = sum(len(s.pts) for s in segments)
    if coded != len(pts):  # a worker-side mismatch is retried; the parent checks again
        raise RuntimeError(f"chunk {job['index']}: encoded {coded} frames, the plan has {len(pts)}")
    return {"header": encode_sequence_header(header), "packets": [s.packet for s in segments],
            "backends": engines.backends(), "seconds": time.perf_counter() - started}


def _worker_logging(level: int) -> None:
    """Log in a worker at the parent's level, as the CLI does; the rate warning is the whole job's, said once by the
    parent, not once per chunk."""
    if package_logger.level != level:
        package_logger.setLevel(level)
        result_log.setLevel(max(level, logging.ERROR))
        to_stderr(always=True)


def stored_chunk(job: dict) -> dict:
    """Worker: a chunk a resumed job had already encoded (its result travels with the task)."""
    return job["result"]


def decode_chunk(job: dict) -> dict:
    """Worker: decode a chunk of segment packets with the codec core; ``lookahead`` (the next segment, or None
    after a scene cut or at the end) supplies the keyframe the chunk's last segment moves towards, as in a serial
    decode. Returns the frames (stacked) with their pts and the number of concealed segments."""
    header, _ = decode_sequence_header(job["header"])
    _, codec = open_decoder(header, {}, profile=job["profile"], engine=job["engine"], mode=job["mode"],
                            offload=job["offload"], enhance=job.get("enhance", True))
    out: list[Frame] = []
    for packet in job["packets"]:
        out += codec.send(packet if isinstance(packet, CorruptSegment) else decode_packet(packet))
    if job["lookahead"] is not None:
        out += codec.send(decode_packet(job["lookahead"]))  # emits the held last segment, towards it
    else:
        out += codec.flush()
    return {"images": np.stack([f.image for f in out]) if out else None, "pts": [f.pts for f in out],
            "corrupt": codec.corrupt}


# -- encode ---------------------------------------------------------------------------------------------------------

class ResumeStore:
    """``-resume WORKDIR``: each finished chunk is kept as ``chunk_NNNNN.<digest>.bin`` (written atomically); a rerun
    of the same job reuses every chunk whose digest (options + pts + pixels) matches. Removed when the job succeeds."""

    MAGIC = b"M3CVCHNK"

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"-resume {folder}: cannot create the folder ({err.strerror}); choose another") from None
        self.written: list[Path] = []

    def path(self, index: int, digest: str) -> Path:
        return self.folder / f"chunk_{index:05d}.{digest[:24]}.bin"

    def load(self, index: int, digest: str) -> dict | None:
        path = self.path(index, digest)
        if not path.is_file():
            return None
        data = path.read_bytes()
        if not data.startswith(self.MAGIC):
            return None
        items, pos = [], len(self.MAGIC)
        while pos + 4 <= len(data):
            (size,) = struct.unpack_from("<I", data, pos)
            items.append(data[pos + 4:pos + 4 + size])
            pos += 4 + size
        if pos != len(data) or len(items) < 2:
            return None
        self.written.append(path)
        return {"header": items[0], "backends": items[1].decode(), "packets": items[2:]}

    def save(self, index: int, digest: str, result: dict) -> None:
        items = [result["header"], result["backends"].encode(), *result["packets"]]
        body = self.MAGIC + b"".join(struct.pack("<I", len(i)) + bytes(i) for i in items)
        path = self.path(index, digest)
        write_bytes(path, body)
        self.written.append(path)

    def clear(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass  # not empty: other files are the user's


def encode_chunked(src: Any, dst: Any, *, options: dict, source_options: dict, overwrite: bool | None = None,
                   format: str | None = None, audio: bool = True, tags: dict[str, str] | None = None,
                   fps: float = 25, workers_n: int = 0, cluster: str | None = None, resume: str | None = None,
                   chunk_min: int = 0, chunk_max: int = 0, progress: ProgressCallback | None = None,
                   audio_options: AudioOptions | None = None) -> Result:
    """Encode ``src`` in chunks on workers; the same options as :func:`m3cvcav.api.encode` (``options``: vf,
    filter_complex, size, rate, bitrate in bits/s, q, profile, engine, mode, offload; ``source_options``: ss, t,
    frames). The parent keeps the source, its audio, the FFmpeg filters and the mux; workers run the coding nodes."""
    if isinstance(dst, (str, os.PathLike)) and str(dst) != "-":
        check_output(str(dst), overwrite)
    elif str(dst) == "-":
        dst, format = sys.stdout.buffer, format or "m3cv"
    p = pipeline.plan(options.get("vf"), options.get("filter_complex"), size=options.get("size"),
                      rate=str(options["rate"]) if options.get("rate") else None, ours=pipeline.ENCODER_NODES)
    profile_name = options.get("profile", DEFAULT_PROFILE)
    engines = Engines(profile_name, options.get("engine", "auto"), options.get("offload", False))
    engines.check_mode(options.get("mode", "it2v"))
    chunk_options = {k: v for k, v in options.items() if k not in ("vf", "filter_complex", "size", "rate")}
    chunk_options["vf"] = pipeline.graph_text(p.bound)  # our nodes only: FFmpeg filters run here
    store = ResumeStore(resume) if resume else None

    source = open_source(src, fps=fps, audio=audio, **source_options)
    mux = Mux(dst, format=format, tags=tags, profile_name=engines.name, audio_stream=source.audio_stream,
              audio_options=audio_options)
    chunk_options["frame_overhead"] = mux.frame_overhead  # the container's bytes a frame, counted by rate control
    identity = json.dumps({k: str(v) for k, v in sorted(chunk_options.items())} | {"version": __version__})
    pool = None
    try:
        ffmpeg_chain = p.ffmpeg_chain()
        info = ffmpeg_chain.configure(source.info)

        def filtered() -> Iterator[Frame]:
            for item in source.run():
                if isinstance(item, AudioPacket):
                    mux.add_audio(item.packet)
                    continue
                yield from ffmpeg_chain.process(item)
            yield from ffmpeg_chain.flush()

        def released(frames_in: Iterator[Frame]) -> Iterator[Frame]:
            """Audio up to each frame goes to the mux as the frames are read, as in a serial encode."""
            for frame in frames_in:
                mux.release(frame.time + 1 / float(info.fps))
                yield frame

        frames_in = filtered()
        first = next(frames_in, None)
        if first is None:
            raise (UsageError("the FFmpeg filters left no frame: check -vf / -ss / -t") if p.ffmpeg else
                   InputError(f"no video frame was read from {src}: check -ss/-t/-frames"))
        info = ffmpeg_chain.output_info(info, first)
        bounds = chunks.Bounds(chunk_min, chunk_max, Fraction(info.fps))
        bounds.resolved()
        stats = ChunkStats(total_frames=info.frame_count, duration=info.duration, written_time=0.0)  # what is coded
        if info.frame_count:
            stats.chunks_total = -(-info.frame_count // bounds.resolved()[1])
        planned: dict[int, tuple[chunks.Chunk, str]] = {}

        def tasks() -> Iterator[workers.Task]:
            for chunk in chunks.plan(released(itertools.chain([first], frames_in)), bounds):
                digest = chunk.digest(identity) if store else ""
                planned[chunk.index] = (dataclasses.replace(chunk, images=np.empty(0, np.uint8)), digest)
                stored = store.load(chunk.index, digest) if store else None
                if stored is not None:
                    log.info("chunk %d: reusing %s", chunk.index, store.path(chunk.index, digest).name)
                    yield workers.Task(chunk.index, stored_chunk, {"result": stored})
                    continue
                yield workers.Task(chunk.index, encode_chunk, {
                    "index": chunk.index, "images": chunk.images, "pts": [q - chunk.pts[0] for q in chunk.pts],
                    "time_base": chunk.time_base, "fps": info.fps, "options": chunk_options,
                    "loglevel": package_logger.getEffectiveLevel()})

        header = info.header(engines.profile_id, engines.profile.model_refs(),
                             stream_version(engines, options.get("mode", "it2v")))
        mux.configure(header)
        counters = workers.Counters()
        segments = frames = 0

        def tick(partial: int) -> None:  # frames the running chunks reported: one line for the whole job
            stats.frame, stats.retried = frames + partial, counters.retried
            stats.media_time = max(stats.media_time, stats.frame / float(info.fps))
            if progress and partial:
                progress(stats)

        pool = make_pool(workers_n, cluster, profile_name, options.get("engine", "auto"),
                         options.get("offload", False), "encoder", stats.chunks_total)
        with workers.signals_as_interrupts():
            for task, result in workers.run_ordered(pool, tasks(), counters=counters, tick=tick):
                chunk, digest = planned.pop(task.key)
                coded = sum(chunks.packet_frames(q) for q in result["packets"])
                if coded != chunk.frames:
                    raise BitstreamError(f"chunk {chunk.index} (frames {chunk.start}..{chunk.start + chunk.frames - 1})"
                                         f" came back with {coded} frames instead of {chunk.frames}")
                _check_header(result["header"], header, chunk.index)
                if store and task.fn is encode_chunk:
                    store.save(chunk.index, digest, result)
                if segments == 0 and BACKEND_TAG not in (tags or {}):
                    mux.tags[BACKEND_TAG] = result["backends"]  # what the workers ran on
                for n, packet in enumerate(result["packets"]):
                    mux.write_packet(chunks.renumber(packet, segments, chunk.pts[0],
                                                     scene_cut=True if n == 0 and chunk.cut else None))
                    segments += 1
                frames += chunk.frames
                stats.chunk_seconds.append(result.get("seconds", 0.0))
                stats.frame, stats.segments = frames, segments
                stats.size, stats.video_size = mux.bytes_written, mux.video_bytes
                stats.media_time = float(chunk.pts[-1] * chunk.time_base)
                stats.written_time = stats.media_time + 1 / float(info.fps)
                stats.chunks_done, stats.retried = counters.done, counters.retried
                if progress:
                    progress(stats)
            duration = stats.media_time + 1 / float(info.fps)
            mux.close(duration)  # the audio ends with the video (-frames:v, -t)
    except BaseException:
        mux.abort()
        raise
    finally:
        source.close()
    if store:
        store.clear()
    stats.chunks_total, stats.total_frames = stats.chunks_done, stats.frame
    stats.media_time = stats.written_time = duration
    result = Result(frames, segments, mux.video_bytes, duration, total_bytes=mux.bytes_written)
    stats.size, stats.video_size = mux.bytes_written, result.bytes
    if progress:
        progress(stats)
    log.log(15, "encoded %d frames in %d chunks (%d retried) into %d segments: %s on %d %s worker(s)", frames,
            counters.done, counters.retried, segments, result.summary(), pool.capacity, pool.kind)
    return result


def _check_header(unit: bytes, header: SequenceHeader, index: int) -> None:
    """A chunk's sequence header must name the stream's profile and models (a cluster node with other weights or
    another m3cvcav would otherwise mix streams)."""
    theirs, _ = decode_sequence_header(unit)

    def ids(h: SequenceHeader) -> tuple:
        return h.profile_id, [(m.model_id, m.sha256) for m in h.models], tuple(h.version)

    if ids(theirs) != ids(header):
        raise ModelError(f"chunk {index} was encoded with profile {theirs.profile_id}, models "
                         f"{[m.model_id for m in theirs.models]}, version {theirs.version}, not those of this job: "
                         "install the same m3cvcav and model weights on every worker")


# -- decode ---------------------------------------------------------------------------------------------------------

class ParallelDecoder(StreamDecoder):
    """What :class:`m3cvcav.filters.decoder.Decoder` offers to ``decode_to`` (``reader``, ``header``, ``tags``,
    ``info``, ``frames()``, ``segments_read``, ``corrupt``, ``close()``), with the segments decoded on workers in
    chunks: a chunk closes after ``chunk_frames`` frames (0: 10 s) at the next intact segment, and carries that
    segment as its lookahead unless a scene cut opens it."""

    def __init__(self, src: Any, *, profile: str | None = None, engine: str = "auto", mode: str = "it2v",
                 offload: bool = False, workers_n: int = 0, cluster: str | None = None, chunk_frames: int = 0,
                 enhance: bool = True):
        demux = Demux(src)
        self.reader, self.header, self.tags = demux.reader, demux.header, demux.tags
        try:
            self.profile_name = stream_profile(profile, self.tags, self.header)  # what the workers load
            engines = stream_engines(self.header, self.tags, profile=self.profile_name, engine=engine, offload=offload)
            engines.check_mode(mode)  # a stream the profile cannot decode fails here, before any worker starts
        except BaseException:
            demux.close()
            raise
        self.engine, self.mode, self.offload, self.enhance = engine, mode, offload, enhance
        self.workers_n, self.cluster = workers_n, cluster
        self.chunk_frames = chunk_frames or max(1, round(self.header.fps * 10))
        self.corrupt = 0
        self.segments_read = 0

    def _chunks(self) -> Iterator[tuple[list, bytes | None]]:
        """(chunk of packets, lookahead packet or None). A chunk closes only before an intact packet, so no chunk
        starts with a damaged segment (whose concealment needs the frames before it); every intact segment decodes
        alone."""
        chunk: list = []
        count = 0
        for packet in self.reader.packets():
            head = peek_segment_header(packet) if isinstance(packet, bytes) and units_intact(packet) else None
            if chunk and count >= self.chunk_frames and head is not None:
                yield chunk, None if head.flags & SCENE_CUT else packet
                chunk, count = [], 0
            chunk.append(packet)
            count += packet.frame_count if isinstance(packet, CorruptSegment) else head.frame_count if head else 0
        if chunk:
            yield chunk, None

    def frames(self) -> Iterator[Frame]:
        base = {"header": self.reader.header_unit, "profile": self.profile_name, "engine": self.engine,
                "mode": self.mode, "enhance": self.enhance, "offload": self.offload}

        def tasks() -> Iterator[workers.Task]:
            for key, (chunk, lookahead) in enumerate(self._chunks()):
                yield workers.Task(key, decode_chunk, {**base, "packets": chunk, "lookahead": lookahead})

        pool = make_pool(self.workers_n, self.cluster, self.profile_name, self.engine, self.offload, "decoder")
        index = 0
        tb = self.header.time_base
        with workers.signals_as_interrupts():
            for task, result in workers.run_ordered(pool, tasks()):
                self.segments_read += len(task.payload["packets"])
                self.corrupt += result["corrupt"]
                for i, pts in enumerate(result["pts"]):
                    yield Frame(result["images"][i], pts, tb, index)
                    index += 1
