"""The garbage collector around the daemon's bulk work: paused, then the armed heap frozen; a
re-arm lets the objects of the set it replaced be collected (no old armed set kept)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from reconciler.engine.collector import ArmedFreeze, gc_paused


@pytest.fixture
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_paused_and_restored_as_it_was() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner one found it off and leaves it off
    assert gc.isenabled()


def test_a_rearm_collects_the_cycles_of_the_set_frozen_before(thawed: None) -> None:
    freeze = ArmedFreeze()
    old = Node()
    gone = weakref.ref(old)
    freeze.after_rearm()
    assert gc.get_freeze_count() > 0
    del old
    gc.collect()
    assert gone() is not None  # frozen: out of the collector's sight
    freeze.after_rearm()  # the next full re-arm: unfrozen, collected, the new heap frozen
    assert gone() is None
    assert gc.get_freeze_count() > 0
