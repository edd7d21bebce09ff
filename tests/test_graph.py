"""The FFmpeg filter-graph grammar, node option tables and the PyAV filter chain."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from m3cvcav.core.errors import UsageError
from m3cvcav.filters import pipeline
from m3cvcav.filters.ffmpeg import FFmpegChain
from m3cvcav.filters.graph import FilterSpec, get_token, linearize, parse_graph
from m3cvcav.filters.items import Frame, VideoInfo
from m3cvcav.filters.node import REGISTRY, Chain


def test_get_token_quotes_escapes_and_whitespace():
    assert get_token("  a b  ,c", 0, ",") == ("a b", 7)  # stops at the comma
    assert get_token(r"'x,y'\,z,w", 0, ",")[0] == "x,y,z"
    assert get_token(r"a\ ", 0, ",")[0] == "a "  # an escaped space is kept
    assert get_token("'  '", 0, ",")[0] == "  "  # quoted whitespace is kept


def test_chains_graphs_labels_and_positional_options():
    chains = parse_graph("[0:v]scale=320:-2 , select=0.4:max=50[mid];[mid] tokenize=q=2[out]")
    assert [[s.name for s in c] for c in chains] == [["scale", "select"], ["tokenize"]]
    assert chains[0][0].inputs == ["0:v"] and chains[0][1].outputs == ["mid"]
    assert chains[0][1].options() == (["0.4"], {"max": "50"})
    assert [s.name for s in linearize(chains)] == ["scale", "select", "tokenize"]


def test_two_level_escaping_like_ffmpeg():
    # graph level removes the quotes, option level the backslash: FFmpeg's drawtext=text='a\:b' gives "a:b"
    (spec,), = parse_graph(r"drawtext=text='a\:b':x=1")
    assert spec.options() == ([], {"text": "a:b", "x": "1"})
    (spec,), = parse_graph(r"select=threshold=0.5\,0.6")
    assert spec.args == "threshold=0.5,0.6"


@pytest.mark.parametrize("text", ["", "scale=1:2,", "[a scale", "select=l1=1:0.5", "a;;b"])
def test_malformed_graphs_are_usage_errors(text):
    with pytest.raises(UsageError):
        chains = parse_graph(text)
        for chain in chains:
            for spec in chain:
                spec.options()


def test_unconnected_filter_complex_is_rejected():
    with pytest.raises(UsageError, match="not connected"):
        linearize(parse_graph("[0:v]scale=2:2[a];[b]select"))


def test_node_options_typed_ranges_and_unknowns():
    select = REGISTRY["select"]
    node = select(["0.5"], max="2k", l2="3")
    assert node.opts["threshold"] == 0.5 and node.opts["max"] == 2000 and node.opts["l2"] == 3.0
    with pytest.raises(UsageError, match="valid options: threshold, l1, l2"):
        select(bogus="1")
    with pytest.raises(UsageError, match="out of range"):
        select(threshold="-1")
    with pytest.raises(UsageError, match="not a valid int"):
        select(max="1.5")
    with pytest.raises(UsageError, match=r"not an m3cvcav node \(base, describe, generate, select, tokenize\)"):
        pipeline.plan("selekt", None, size=None, rate=None, ours=pipeline.ENCODER_NODES)
    assert "threshold (float, default 0.35" in select.help()
    assert sorted(REGISTRY) == ["base", "describe", "generate", "select", "tokenize"]  # not source, sink, mux...


def test_plan_orders_and_checks_nodes():
    p = pipeline.plan("scale=320:-2,select=0.5,base=q=1:size=1/4", None, size="160x90", rate="10",
                      ours=pipeline.ENCODER_NODES)
    assert [s.name for s in p.ffmpeg] == ["scale", "scale", "fps"]
    assert p.bound["select"]["threshold"] == 0.5 and p.bound["base"]["q"] == 1 and p.bound["base"]["size"] == "1/4"
    assert pipeline.graph_text(p.bound) == "select=threshold=0.5,base=q=1:size='1/4'"  # what a chunk's worker gets
    again = pipeline.plan(pipeline.graph_text(p.bound), None, size=None, rate=None, ours=pipeline.ENCODER_NODES)
    assert again.bound == p.bound
    with pytest.raises(UsageError, match="FFmpeg filters first"):
        pipeline.plan("select,scale=2:2", None, size=None, rate=None, ours=pipeline.ENCODER_NODES)
    with pytest.raises(UsageError, match="cannot be used here"):
        pipeline.plan("generate", None, size=None, rate=None, ours=pipeline.ENCODER_NODES)
    with pytest.raises(UsageError, match="nor a filter of the FFmpeg that PyAV bundles"):
        pipeline.plan("scalez=2:2", None, size=None, rate=None, ours=pipeline.ENCODER_NODES)
    with pytest.raises(UsageError, match="WIDTHxHEIGHT"):
        pipeline.plan(None, None, size="big", rate=None, ours=pipeline.ENCODER_NODES)


def _frames(n, h=48, w=64):
    for i in range(n):
        image = np.full((h, w, 3), i * 10 % 256, np.uint8)
        yield Frame(image, i, Fraction(1, 25), i)


def test_ffmpeg_chain_scales_crops_and_changes_rate():
    chain = FFmpegChain([FilterSpec("crop", "32:24:0:0"), FilterSpec("scale", "16:12"), FilterSpec("fps", "5")])
    info = chain.configure(VideoInfo(64, 48, Fraction(25), Fraction(1, 25)))
    assert info.fps == 5 and info.time_base == Fraction(1, 5)
    out = list(Chain([chain]).run(_frames(25)))
    assert len(out) == 5 and all(f.image.shape == (12, 16, 3) for f in out)
    assert [f.pts for f in out] == [0, 1, 2, 3, 4] and out[0].time_base == Fraction(1, 5)
    values = [int(f.image[0, 0, 0]) for f in out]
    assert values == sorted(values) and len(set(values)) == 5  # one distinct input frame per output slot


def test_ffmpeg_filter_bad_arguments_are_usage_errors():
    chain = FFmpegChain([FilterSpec("scale", "w=abc")])
    with pytest.raises(UsageError, match="scale"):
        list(Chain([chain]).run(_frames(1)))


def test_ffmpeg_chain_reads_the_size_of_the_first_frame_out():
    p = pipeline.plan("scale=32:-2", None, size=None, rate=None, ours=pipeline.ENCODER_NODES)
    ffmpeg_chain = p.ffmpeg_chain()
    info = ffmpeg_chain.configure(VideoInfo(64, 48, Fraction(25), Fraction(1, 25)))
    frames = list(Chain([ffmpeg_chain]).run(_frames(3)))
    info = ffmpeg_chain.output_info(info, frames[0])
    assert (info.width, info.height) == (32, 24) and len(frames) == 3
    passthrough = pipeline.plan(None, None, size=None, rate=None, ours=pipeline.ENCODER_NODES).ffmpeg_chain()
    assert [f.pts for f in Chain([passthrough]).run(_frames(3))] == [0, 1, 2]


def test_a_chain_pushed_gives_what_it_gives_pulled():
    def chain():
        return Chain([FFmpegChain([FilterSpec("fps", "10")]), FFmpegChain([FilterSpec("scale", "16:12")])])

    pulled = [(f.pts, f.image.shape) for f in chain().run(_frames(25))]
    pushed_chain = chain()
    pushed = [out for frame in _frames(25) for out in pushed_chain.push(frame)] + pushed_chain.flush()
    assert [(f.pts, f.image.shape) for f in pushed] == pulled and len(pulled) == 10
