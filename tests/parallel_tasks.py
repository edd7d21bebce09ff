"""Light task functions for the scheduler tests of test_parallel.py, in a module with no heavy imports, so the
spawned workers that unpickle them start fast."""
from __future__ import annotations

import os
import time

from m3cvcav.core.errors import UsageError


def sleepy(payload: dict) -> int:
    time.sleep(payload["sleep"])
    return payload["key"]


def dies_once(payload: dict) -> int:
    """Task 1 kills its worker the first time (a marker file remembers), then succeeds."""
    marker = payload["marker"]
    if payload["key"] == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)
    return payload["key"]


def always_dies(payload: dict) -> None:
    os._exit(9)


def bad_option(payload: dict) -> None:
    raise UsageError("bad option")
