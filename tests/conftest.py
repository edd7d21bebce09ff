"""Shared fixtures: the real media in ../shared/media (tests skip with a reason when it is absent) and, through the
``tiny_models`` plugin, the tiny m3cvc models (``tiny_root``, ``tiny_sd``, ``tiny_m3cvc``, ...): tests ask for them by
name and import nothing. Helper functions live in ``helpers.py``."""
from __future__ import annotations

import pytest

from helpers import media_path

pytest_plugins = ["tiny_models"]


@pytest.fixture
def media():
    return media_path


@pytest.fixture(scope="session", autouse=True)
def _private_caches(tmp_path_factory):
    """Engines exported or built by the tests go to a temporary cache, never into the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("M3CVC_ENGINE_CACHE", str(tmp_path_factory.mktemp("engine-cache")))
        yield
