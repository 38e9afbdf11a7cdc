"""The server's garbage-collector tuning (bot/gc_policy.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bot.gc_policy import YOUNG_THRESHOLD, tune_for_serving


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_startup_objects_are_frozen_and_the_young_collected_less_often(restored_gc: None) -> None:
    before = gc.get_threshold()

    class Startup:
        pass

    alive_at_startup = Startup()
    tune_for_serving()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
    assert before[0] < YOUNG_THRESHOLD
    # Frozen objects are not tracked by any generation any more: collections skip them.
    assert not any(o is alive_at_startup for o in gc.get_objects())
