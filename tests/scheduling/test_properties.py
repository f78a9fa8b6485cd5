"""Laws of the engine, checked with Hypothesis, and brute-force oracles for the DST rule.

The oracles below are written independently of the engine: a small matcher for plain Unix
fields, and a minute-by-minute walk over real instants with ``zoneinfo`` round trips.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.scheduling import fire_at, plan_missed

from .conftest import trigger

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Pacific/Chatham",
]
#: Days around the 2026 (and Sao Paulo 2018) transitions, so that DST is actually exercised.
TRANSITION_DAYS = [
    date(2026, 3, 8),
    date(2026, 11, 1),
    date(2026, 3, 29),
    date(2026, 10, 25),
    date(2026, 4, 5),
    date(2026, 10, 4),
    date(2018, 11, 4),
    date(2019, 2, 17),
    date(2026, 9, 27),
]

MINUTES = ["0", "30", "15,45", "*/20", "*", "0-10", "5/25"]
HOURS = ["*", "0", "1", "2", "3", "1,2", "*/2", "0-3", "22-23", "23"]

unix_exprs = st.builds(
    lambda m, h: f"{m} {h} * * *", st.sampled_from(MINUTES), st.sampled_from(HOURS)
)
quartz_exprs = st.builds(
    lambda s, m, h, d: f"{s} {m} {h} {d}",
    st.sampled_from(["0", "30", "*/20", "0,15"]),
    st.sampled_from(MINUTES),
    st.sampled_from(HOURS),
    st.sampled_from(
        [
            "* * ?",
            "? * MON-FRI",
            "L * ?",
            "15W * ?",
            "? * 1#2",
            "? * 6L",
            "1,15 * ?",
            "? JAN,MAR,OCT,NOV *",
        ]
    ),
)
instants = st.builds(
    lambda day, minutes: (
        datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=minutes)
    ),
    st.sampled_from(TRANSITION_DAYS),
    st.integers(min_value=-3 * 1440, max_value=3 * 1440),
) | st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)
whens = st.one_of(
    unix_exprs.map(lambda e: {"cron": e}),
    quartz_exprs.map(lambda e: {"cron": e}),
    st.sampled_from(["15m", "1h", "90m", "1d", "7d"]).map(lambda e: {"every": e}),
    st.sampled_from(["00:00", "00:30", "01:30", "02:00", "02:30", "03:00", "23:30"]).map(
        lambda a: {"daily": {"at": a}}
    ),
    st.sampled_from([1, 4, 29, 31, "last"]).map(lambda d: {"monthly": {"day": d, "at": "02:30"}}),
    st.just({"weekly": {"days": ["sun", "wed"], "at": "02:15"}}),
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(fields=whens, zone=st.sampled_from(ZONES), t=instants)
def test_slots_strictly_increase_and_next_after_a_slot_is_the_following_one(
    fields: dict[str, object], zone: str, t: datetime
) -> None:
    tr = trigger(zone, **fields)
    slots = tr.slots_after(t, 8)
    assert slots, "every generated schedule fires"
    assert slots[0] > t
    assert all(a < b for a, b in itertools.pairwise(slots))
    for a, b in itertools.pairwise(slots):
        assert tr.next_after(a) == b


@SETTINGS
@given(fields=whens, zone=st.sampled_from(ZONES), t=instants)
def test_next_after_t_never_returns_t(fields: dict[str, object], zone: str, t: datetime) -> None:
    tr = trigger(zone, **fields)
    nxt = tr.next_after(t)
    assert nxt is not None and nxt > t
    assert tr.next_after(nxt) != nxt


@SETTINGS
@given(
    fields=whens,
    zone=st.sampled_from(ZONES),
    t=instants,
    name=st.text(min_size=1, max_size=20),
    jitter=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=9)),
)
def test_jitter_is_stable_and_stays_below_the_next_slot(
    fields: dict[str, object], zone: str, t: datetime, name: str, jitter: timedelta
) -> None:
    tr = trigger(zone, **fields)
    slot, nxt = tr.slots_after(t, 2)
    fired = fire_at(name, slot, jitter, nxt)
    assert fired == fire_at(name, slot, jitter, nxt)
    assert slot <= fired < nxt
    assert fired - slot < jitter


@SETTINGS
@given(
    fields=whens,
    zone=st.sampled_from(ZONES),
    t=instants,
    downtime=st.integers(min_value=0, max_value=3 * 86400),
    window=st.integers(min_value=1, max_value=2 * 86400),
    policy=st.sampled_from(["once", "skip", "all"]),
)
def test_due_slots_are_never_repeated_and_never_lost_inside_the_misfire_window(
    fields: dict[str, object], zone: str, t: datetime, downtime: int, window: int, policy: str
) -> None:
    tr = trigger(zone, **fields)
    now = t + timedelta(seconds=downtime)
    expected = []
    cur = tr.next_after(t)
    while cur is not None and cur <= now:
        expected.append(cur)
        cur = tr.next_after(cur)
    due = list(tr.due_between(t, now))
    assert due == expected
    decisions = plan_missed(tr, t, now, policy, timedelta(seconds=window))  # type: ignore[arg-type]
    assert [d.slot for d in decisions] == expected  # every slot exactly once, in order
    runs = [d.slot for d in decisions if d.action == "run"]
    in_window = [s for s in expected if now - s <= timedelta(seconds=window)]
    if policy == "all":
        assert set(in_window) <= set(runs)
    if policy == "once" and in_window:
        assert len(runs) >= 1
    assert all(d.reason == "misfire" for d in decisions if d.action == "skip")


# --- independent oracles ---------------------------------------------------------------------


def _field(text: str, lo: int, hi: int) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            a, b = lo, hi
        elif "-" in base:
            a, b = (int(x) for x in base.split("-"))
        else:
            a = int(base)
            b = hi if step else a
        out.update(range(a, b + 1, int(step or 1)))
    return out


def _oracle_real(expr: str, zone: str, t: datetime) -> datetime:
    """Walk real instants minute by minute; fire where the local wall clock matches."""
    m_text, h_text = expr.split()[:2]
    mins, hours = _field(m_text, 0, 59), _field(h_text, 0, 23)
    z = ZoneInfo(zone)
    u = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while True:
        loc = u.astimezone(z)
        if loc.minute in mins and loc.hour in hours:
            return u
        u += timedelta(minutes=1)


def _oracle_fixed(expr: str, zone: str, t: datetime) -> datetime:
    """For each local day: each matching wall time, resolved by the rule via round trips."""
    m_text, h_text = expr.split()[:2]
    mins, hours = sorted(_field(m_text, 0, 59)), sorted(_field(h_text, 0, 23))
    z = ZoneInfo(zone)
    day = t.astimezone(z).date() - timedelta(days=1)
    while True:
        found = []
        for h in hours:
            for m in mins:
                naive = datetime(day.year, day.month, day.day, h, m)
                first = naive.replace(tzinfo=z, fold=0).astimezone(UTC)
                if first.astimezone(z).replace(tzinfo=None) == naive:
                    earlier = naive.replace(tzinfo=z, fold=1).astimezone(UTC)
                    found.append(
                        min(first, earlier)
                        if earlier.astimezone(z).replace(tzinfo=None) == naive
                        else first
                    )
                else:  # in a gap: walk to the first instant whose wall time is past it
                    v = naive.replace(tzinfo=z, fold=1).astimezone(UTC)
                    while v.astimezone(z).replace(tzinfo=None) <= naive:
                        v += timedelta(minutes=1)
                    found.append(v)
        later = sorted(f for f in found if f > t)
        if later:
            return later[0]
        day += timedelta(days=1)


#: (zone, local day of a transition) pairs
TRANSITIONS = [
    ("America/New_York", date(2026, 3, 8)),
    ("America/New_York", date(2026, 11, 1)),
    ("Europe/Berlin", date(2026, 3, 29)),
    ("Europe/Berlin", date(2026, 10, 25)),
    ("Australia/Lord_Howe", date(2026, 4, 5)),
    ("Australia/Lord_Howe", date(2026, 10, 4)),
    ("America/Sao_Paulo", date(2018, 11, 4)),
    ("America/Sao_Paulo", date(2019, 2, 16)),
    ("Pacific/Chatham", date(2026, 4, 5)),
    ("Pacific/Chatham", date(2026, 9, 27)),
]


@st.composite
def near_a_transition(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and an instant up to a day and a half before one of its transitions."""
    zone, day = draw(st.sampled_from(TRANSITIONS))
    midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    back = draw(st.integers(min_value=-6 * 60, max_value=36 * 60))
    return zone, midnight - timedelta(minutes=back, seconds=draw(st.integers(0, 59)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=unix_exprs, zt=near_a_transition())
def test_next_slot_matches_a_brute_force_walk_for_the_rule_that_applies(
    expr: str, zt: tuple[str, datetime]
) -> None:
    zone, t = zt
    tr = trigger(zone, cron=expr)
    oracle = _oracle_fixed if tr.fixed_time else _oracle_real
    assert tr.next_after(t) == oracle(expr, zone, t)
