"""Shared fixtures: the real media in ../shared/media (tests skip with a reason when it is absent) and, through the
``tiny_models`` plugin, the tiny m3cvc models (``tiny_root``, ``tiny_sd``, ``tiny_m3cvc``, ...): tests ask for them by
name and import nothing; ``bbb_stream``, a short stream with audio encoded once per session. Helper functions live in
``helpers.py``."""
from __future__ import annotations

import pytest

from helpers import media_path, require_lite_weights

pytest_plugins = ["tiny_models"]


@pytest.fixture
def media():
    return media_path


@pytest.fixture(scope="session")
def bbb_stream(tmp_path_factory):
    """(path, Result): 1.2 s of Big Buck Bunny at 192x108 with its 5.1 AAC (~385 kbit/s) audio, encoded by the API
    on the lite profile; what the audio, probe, CLI and API tests read."""
    require_lite_weights()
    import torch

    import m3cvcav

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bbb") / "s.mkv"
    result = m3cvcav.encode(media_path("clips/bigbuckbunny.mp4"), out, t=1.2, vf="scale=192:-2,select=max=10")
    return out, result


@pytest.fixture(scope="session")
def framework_stream(tmp_path_factory):
    """4 s of the sample clip at 192x108 in 4 segments, with audio and descriptions, and beside it the CLI's raw
    decode (``cli.yuv``): what the GStreamer and VapourSynth tests compare their frames with."""
    require_lite_weights()
    import torch

    from m3cvcav.__main__ import main

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("framework-stream")
    out = folder / "s.mkv"
    assert main(["-nostats", "-i", str(media_path("clips/bigbuckbunny.mp4")), "-t", "4", "-vf",
                 "scale=192:-2,select=max=25", "-c", "m3cvc", str(out)]) == 0
    assert main(["-nostats", "-i", str(out), "-f", "rawvideo", str(folder / "cli.yuv")]) == 0
    return out


@pytest.fixture(scope="session", autouse=True)
def _private_caches(tmp_path_factory):
    """Engines exported or built by the tests go to a temporary cache, never into the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("M3CVC_ENGINE_CACHE", str(tmp_path_factory.mktemp("engine-cache")))
        yield


def _needs_media(item) -> bool:
    """Whether a test, or a fixture it uses, reads ../shared/media (the ``media`` fixture or ``media_path``)."""
    import inspect

    if "media" in item.fixturenames:
        return True
    functions = [getattr(item, "function", None)]
    for defs in item._fixtureinfo.name2fixturedefs.values():
        functions += [d.func for d in defs]
    for function in functions:
        try:
            if function is not None and "media_path(" in inspect.getsource(function):
                return True
        except (OSError, TypeError):
            pass
    return False


def pytest_collection_modifyitems(config, items):
    """The ``media`` marker on every test that reads the shared media (``-m "not media"`` runs without it)."""
    for item in items:
        if _needs_media(item):
            item.add_marker(pytest.mark.media)
