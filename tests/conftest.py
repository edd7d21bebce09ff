"""Shared fixtures: the real media in ../shared/media (tests skip with a reason when it is absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"


def media_path(relative: str) -> Path:
    """Path of a file under ../shared/media, or skip the test saying what is missing."""
    path = MEDIA / relative
    if not path.exists():
        pytest.skip(f"test media {path} is absent (../shared/media is provided beside the checkout in CI)")
    return path


@pytest.fixture
def media():
    return media_path


@pytest.fixture(scope="session", autouse=True)
def _private_caches(tmp_path_factory):
    """Engines exported or built by the tests go to a temporary cache, never into the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("M3CVC_ENGINE_CACHE", str(tmp_path_factory.mktemp("engine-cache")))
        yield
