"""The cyclic garbage collector around the daemon's bulk work.

Loading a repository allocates hundreds of thousands of short-lived objects, and arming
100,000 schedules builds as many long-lived ones: each automatic collection on the way walks
every object alive, for no garbage. :func:`gc_paused` turns automatic collections off for such
a stretch; :class:`ArmedFreeze` moves what the firing loop armed out of the collector's sight
(``gc.freeze``), so the collections of the daemon's everyday work stop walking it (a full pass
over 100,000 armed schedules is tens of milliseconds of fire lateness).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Automatic collections off around allocation-heavy work (nothing in it relies on a
    cycle being collected meanwhile); left off if they were off before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ArmedFreeze:
    """Freezes the heap after the firing loop armed every schedule (:meth:`after_rearm`).
    The objects frozen the time before may have become cyclic garbage when the new armed set
    replaced the old: they are unfrozen and collected once first, so a daemon that re-arms
    after every change of its Settings, templates or Policy does not keep each old set."""

    def __init__(self) -> None:
        self.frozen = False

    def after_rearm(self) -> None:
        if self.frozen:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
        self.frozen = True
