"""Slot arithmetic for the daemon: upcoming fire times, misfire and overlap decisions. Pure.

Every function takes ``now`` (and everything else) as arguments and returns values; the daemon
(a later layer) records each decision in the ledger. Contract (``SPEC.md`` section 3): each
due slot ends in exactly one ledger entry, a run or a skip with a reason; nothing is dropped
silently.

Misfire (:func:`plan_missed`), for the slots ``s`` with ``last_done < s <= now``:

* a slot with ``now - s <= grace`` is **on time**: ``run``, reason ``on-time``;
* an older slot was **missed** (the daemon was down or late). Missed slots older than
  ``window`` (``now - s > window``) are ``skip`` with reason ``misfire`` whatever the policy.
  Inside the window the policy decides:

  - ``all``: each one is ``run``, reason ``catch-up``;
  - ``skip``: each one is ``skip``, reason ``misfire``;
  - ``once``: one catch-up run: if an on-time slot exists it is that run and every missed
    slot is skipped; otherwise the newest missed slot is ``run`` (``catch-up``) and the
    older ones are skipped (``misfire``).

Overlap (:func:`decide_overlap`), when a slot's run is about to start:

* nothing running: ``start``;
* ``skip`` (default): ``skip``, reason ``overlap``;
* ``queue``: ``queue`` when no run is waiting yet, else ``skip`` (one waiting run at most);
* ``cancel``: ``cancel-and-start`` (cancel the running one, start the new one);
* ``allow``: ``start`` alongside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from reconciler.scheduling.jitter import fire_at
from reconciler.scheduling.triggers import Trigger
from reconciler.scheduling.zones import floor_seconds, instant

MisfirePolicy = Literal["once", "skip", "all"]
OverlapPolicy = Literal["skip", "queue", "cancel", "allow"]

#: A slot no older than this when the daemon looks at it is on time, not missed.
DEFAULT_GRACE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Upcoming:
    """One upcoming slot and the instant its run starts (slot + jitter)."""

    slot: datetime
    fire_at: datetime


@dataclass(frozen=True, slots=True)
class SlotDecision:
    """What becomes of one due slot.

    ``action``: ``run`` or ``skip``. ``reason``: ``on-time`` or ``catch-up`` for runs (the
    run's trigger is ``schedule`` or ``catch-up``), ``misfire`` for skips (the ledger reason).
    ``message`` explains it in words.
    """

    slot: datetime
    action: Literal["run", "skip"]
    reason: Literal["on-time", "catch-up", "misfire"]
    message: str


@dataclass(frozen=True, slots=True)
class OverlapDecision:
    """What to do when a slot's run is due.

    ``action``: ``start``, ``skip`` (ledger reason ``overlap``), ``queue`` (wait for the
    running one) or ``cancel-and-start``. ``reason`` is ``overlap`` for skips, else None.
    """

    action: Literal["start", "skip", "queue", "cancel-and-start"]
    reason: Literal["overlap"] | None
    message: str


def upcoming(trigger: Trigger, schedule_name: str, after: datetime, count: int) -> list[Upcoming]:
    """The next ``count`` slots strictly after ``after``, each with its jittered fire time."""
    slots = trigger.slots_after(after, count + 1 if trigger.jitter else count)
    out = []
    for i, slot in enumerate(slots[:count]):
        nxt = slots[i + 1] if i + 1 < len(slots) else None
        out.append(Upcoming(slot, fire_at(schedule_name, slot, trigger.jitter, nxt)))
    return out


def plan_missed(
    trigger: Trigger,
    last_done: datetime,
    now: datetime,
    policy: MisfirePolicy,
    window: timedelta,
    *,
    grace: timedelta = DEFAULT_GRACE,
) -> list[SlotDecision]:
    """A decision for every slot ``s`` with ``last_done < s <= now``, oldest first.

    ``last_done`` is the last instant the daemon has already accounted for (its last slot or
    the moment it last planned). See the module docstring for the rules.
    """
    if policy not in ("once", "skip", "all"):
        raise ValueError(f"unknown misfire policy {policy!r}")
    due = list(trigger.due_between(last_done, now))
    on_time = [s for s in due if now - s <= grace]
    missed = [s for s in due if now - s > grace]
    in_window = [s for s in missed if now - s <= window]
    catch_up: datetime | None = None
    if policy == "all":
        pass
    elif policy == "once" and in_window and not on_time:
        catch_up = in_window[-1]
    out: list[SlotDecision] = []
    for s in due:
        if s in on_time:
            out.append(SlotDecision(s, "run", "on-time", "due now"))
        elif now - s > window:
            out.append(
                SlotDecision(
                    s,
                    "skip",
                    "misfire",
                    f"missed, and older than the misfire window ({_words(window)})",
                )
            )
        elif policy == "all":
            out.append(SlotDecision(s, "run", "catch-up", "missed; misfire policy all runs it"))
        elif policy == "skip":
            out.append(SlotDecision(s, "skip", "misfire", "missed; misfire policy is skip"))
        elif s == catch_up:
            out.append(
                SlotDecision(
                    s,
                    "run",
                    "catch-up",
                    f"missed; the one catch-up run for {len(in_window)} missed slot(s)",
                )
            )
        else:
            cover = on_time[0] if on_time else catch_up
            assert cover is not None
            out.append(
                SlotDecision(
                    s,
                    "skip",
                    "misfire",
                    f"missed; covered by the single run for slot {cover.isoformat()} "
                    "(misfire policy once)",
                )
            )
    return out


def decide_overlap(policy: OverlapPolicy, running: bool, queued: int) -> OverlapDecision:
    """What the overlap policy makes of a due run while ``running`` and ``queued`` runs exist."""
    if policy not in ("skip", "queue", "cancel", "allow"):
        raise ValueError(f"unknown overlap policy {policy!r}")
    if not running:
        return OverlapDecision("start", None, "no run of this schedule is going")
    if policy == "skip":
        return OverlapDecision("skip", "overlap", "the previous run is still going")
    if policy == "queue":
        if queued <= 0:
            return OverlapDecision("queue", None, "waits for the running one to finish")
        return OverlapDecision(
            "skip", "overlap", "a run is already waiting (queue holds one waiting run at most)"
        )
    if policy == "cancel":
        return OverlapDecision(
            "cancel-and-start", None, "cancels the running one and starts the new one"
        )
    return OverlapDecision("start", None, "overlap is allowed: starts alongside")


def _words(d: timedelta) -> str:
    secs = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs % size == 0 and secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


@dataclass(frozen=True, slots=True)
class DueEntry:
    """One ledger entry the firing loop writes: a run for ``slot`` or a skip, possibly of a
    range of ``count`` consecutive slots ending at ``until`` with the same reason and message.

    ``reason`` is ``on-time`` or ``catch-up`` for runs, the ledger's skip reason for skips."""

    slot: datetime
    fire_at: datetime
    action: Literal["run", "skip"]
    reason: str
    message: str
    until: datetime | None = None
    count: int = 1


def plan_due(
    trigger: Trigger,
    schedule_name: str,
    last_done: datetime,
    now: datetime,
    policy: MisfirePolicy,
    window: timedelta,
    *,
    grace: timedelta = DEFAULT_GRACE,
) -> tuple[list[DueEntry], datetime | None]:
    """The entries for every slot ``s > last_done`` whose fire time (slot plus jitter) is at or
    before ``now``, oldest first, and the last such slot (the new cursor; None: none is due).

    The same rules as :func:`plan_missed`, measured from each slot's fire time, with runs of
    consecutive skips that share a reason and message folded into one range entry, so an outage
    of an ``every: 1s`` schedule is a few entries, not millions. Slots are walked one by one
    (about 4 µs each) and never held in a list.
    """
    if policy not in ("once", "skip", "all"):
        raise ValueError(f"unknown misfire policy {policy!r}")
    out: list[DueEntry] = []
    last: datetime | None = None
    newest_missed: tuple[datetime, datetime] | None = None  # policy once: the catch-up candidate
    missed_in_window: list[tuple[datetime, datetime]] = []  # policy once: only until decided
    on_time_seen: datetime | None = None
    jitter = trigger.jitter
    ts = trigger.next_seconds(floor_seconds(last_done))
    while ts is not None:
        nxt = trigger.next_seconds(ts)
        slot = instant(ts)
        at = fire_at(schedule_name, slot, jitter, None if nxt is None else instant(nxt))
        if at > now:
            break
        last = slot
        late = now - at
        if late <= grace:
            if on_time_seen is None:
                on_time_seen = slot
            out.append(DueEntry(slot, at, "run", "on-time", "due now"))
        elif late > window:
            _add_skip(
                out,
                DueEntry(
                    slot,
                    at,
                    "skip",
                    "misfire",
                    f"missed, and older than the misfire window ({_words(window)})",
                ),
            )
        elif policy == "all":
            out.append(DueEntry(slot, at, "run", "catch-up", "missed; misfire policy all runs it"))
        elif policy == "skip":
            _add_skip(out, DueEntry(slot, at, "skip", "misfire", "missed; misfire policy is skip"))
        else:  # once: decided when the walk ends; keep a placeholder position
            if newest_missed is not None:
                missed_in_window.append(newest_missed)
            newest_missed = (slot, at)
            out.append(DueEntry(slot, at, "run", "catch-up", ""))  # placeholder, fixed below
        ts = nxt
    if policy == "once" and newest_missed is not None:
        out = _settle_once(out, on_time_seen, len(missed_in_window) + 1)
    return out, last


def _settle_once(
    entries: list[DueEntry], on_time: datetime | None, n_missed: int
) -> list[DueEntry]:
    """Policy ``once``: the placeholders become one catch-up run (the newest missed slot, unless
    a slot is on time) and skips that name the slot whose run covers them."""
    placeholders = [e for e in entries if e.action == "run" and e.reason == "catch-up"]
    cover = on_time if on_time is not None else placeholders[-1].slot
    out: list[DueEntry] = []
    for e in entries:
        if e.action == "run" and e.reason == "catch-up":
            if on_time is None and e is placeholders[-1]:
                out.append(
                    DueEntry(
                        e.slot,
                        e.fire_at,
                        "run",
                        "catch-up",
                        f"missed; the one catch-up run for {n_missed} missed slot(s)",
                    )
                )
                continue
            e = DueEntry(
                e.slot,
                e.fire_at,
                "skip",
                "misfire",
                f"missed; covered by the single run for slot {cover.isoformat()} "
                "(misfire policy once)",
            )
            _add_skip(out, e)
        elif e.action == "skip":
            _add_skip(out, e)
        else:
            out.append(e)
    return out


def _add_skip(out: list[DueEntry], e: DueEntry) -> None:
    """Append a skip, folding it into the previous entry when that is a skip of the same reason
    and message (a range)."""
    if out:
        p = out[-1]
        if p.action == "skip" and p.reason == e.reason and p.message == e.message:
            out[-1] = DueEntry(
                p.slot, p.fire_at, "skip", p.reason, p.message, e.until or e.slot, p.count + e.count
            )
            return
    out.append(e)


def fold_skips(entries: list[DueEntry], reason: str, message: str) -> list[DueEntry]:
    """Every entry turned into a skip for ``reason`` (a paused or disabled schedule), folded."""
    out: list[DueEntry] = []
    for e in entries:
        _add_skip(out, DueEntry(e.slot, e.fire_at, "skip", reason, message, e.until, e.count))
    return out
