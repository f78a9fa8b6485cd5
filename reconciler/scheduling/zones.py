"""Time zones and the DST rule: turning local wall-clock matches into instants. Pure.

The rule (``SPEC.md`` section 3, Debian cron's rule), the same for every form of ``when``:

* **fixed-time** schedules (``at``, ``daily``, ``weekly``, ``monthly``, ``yearly`` and cron
  expressions whose second, minute and hour fields hold no ``*``) fire once on each matching
  local day: a time inside a spring-forward gap fires at the first instant after the gap, a
  time that occurs twice at fall-back fires at its first occurrence only
  (:func:`next_fixed`);
* **real-time** schedules (a ``*`` in one of those fields) follow real time: every instant
  whose local wall-clock time matches fires, so a local time that does not exist is skipped
  and one that occurs twice fires twice (:func:`next_real`).

Instants are handled as integer POSIX seconds (schedules have whole-second resolution);
offsets as integer seconds. A :class:`Zone` wraps a :class:`zoneinfo.ZoneInfo` and finds its
offset transitions by probing the zone itself (cached per zone and year), so the answers are
always those of the tz database that ``zoneinfo`` loaded. Nothing here reads the clock.

Called by :mod:`reconciler.scheduling.triggers`.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reconciler.scheduling.cron import CronExpression

EPOCH: Final = datetime(1970, 1, 1)
EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_SECOND: Final = timedelta(seconds=1)
_PROBE_STEP: Final = 6 * 3600  # transitions are months apart; pairs closer than this are unseen

#: Zone names that are a fixed offset from UTC (no transitions to look for).
_FIXED_KEYS: Final = frozenset(
    {
        "UTC",
        "Etc/UTC",
        "Etc/UCT",
        "UCT",
        "Etc/Universal",
        "Universal",
        "Etc/Zulu",
        "Zulu",
        "GMT",
        "Etc/GMT",
        "Etc/GMT0",
        "Etc/GMT+0",
        "Etc/GMT-0",
        "GMT0",
        "GMT+0",
        "GMT-0",
        "Etc/Greenwich",
        "Greenwich",
    }
)


class UnknownTimezone(ValueError):
    """A name that is not an IANA time zone known to the tz database."""

    def __init__(self, name: str, why: str = "") -> None:
        shown = repr(name if len(name) <= 60 else name[:60] + "...")
        super().__init__(f"{shown} is not an IANA time zone name (like Europe/Berlin or UTC){why}")
        self.name = name
        self.why = why


#: Files that zoneinfo finds in the tz directories but that are no zones of the tz database:
#: ``localtime`` is the host's own zone (a link to /etc/localtime), ``posixrules`` the host's
#: rule for POSIX TZ strings, ``Factory`` a placeholder for "zone not set". A schedule's zone
#: comes from Git, never from the host (SPEC section 3), so they are refused.
_NOT_ZONES: Final = {
    "localtime": ": it is the host's zone, and a zone never comes from the host",
    "posixrules": ": it is the host's rule for POSIX TZ strings, not a zone",
    "Factory": ": it is a placeholder for a zone that was never set",
}
#: Directories of alternative builds of the same zones (``right/`` counts leap seconds,
#: which POSIX time does not; ``posix/`` duplicates the plain names).
_NOT_ZONE_DIRS: Final = ("posix/", "right/")


def _not_a_zone(name: str) -> str | None:
    """Why a name that zoneinfo might load is not an IANA zone name, or None."""
    if name in _NOT_ZONES:
        return _NOT_ZONES[name]
    if name.startswith(_NOT_ZONE_DIRS):
        rest = name.split("/", 1)[1]
        return f": {name.split('/')[0]}/ is another build of the zones; write {rest}"
    return None


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 to the Gregorian date ``y-m-d`` (Howard Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def wall_seconds(y: int, mo: int, d: int, h: int, mi: int, s: int) -> int:
    """A wall-clock time as seconds since 1970-01-01T00:00 of the same clock."""
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


def wall_tuple(seconds: int) -> tuple[int, int, int, int, int, int]:
    """The inverse of :func:`wall_seconds`."""
    t = EPOCH + timedelta(seconds=seconds)
    return t.year, t.month, t.day, t.hour, t.minute, t.second


def floor_seconds(t: datetime) -> int:
    """POSIX seconds of an aware datetime, rounded down to the whole second."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t!r} is a naive datetime; instants must carry a time zone")
    if t.microsecond == 0:
        return int(t.timestamp())  # exact for whole seconds
    return (t - EPOCH_UTC) // ONE_SECOND


def instant(seconds: int) -> datetime:
    """POSIX seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


#: How many resolved wall-clock times a zone remembers (see :meth:`Zone.resolve_fixed`).
_RESOLVED_MAX: Final = 8192


class Zone:
    """An IANA time zone with cached offset transitions.

    Besides the transitions, a zone remembers the answers of its two most repeated questions,
    both pure functions of the tz database: the wall clock at the last instant asked about
    (the loader, the planner and the daemon ask about one ``now`` for every schedule) and
    the instants of recently resolved wall-clock times (many schedules fire at 02:00).
    """

    __slots__ = ("_last_local", "_resolved", "_years", "fixed_offset", "info", "key")

    def __init__(self, key: str, info: ZoneInfo) -> None:
        self.key = key
        self.info = info
        self.fixed_offset: int | None = None
        if key in _FIXED_KEYS or key.startswith("Etc/GMT"):
            off = datetime(2000, 1, 1, tzinfo=info).utcoffset()
            assert off is not None
            self.fixed_offset = int(off.total_seconds())
        self._years: dict[int, tuple[list[int], list[tuple[int, int, int]]]] = {}
        self._last_local: tuple[int, tuple[int, int, int, int, int, int, int]] | None = None
        self._resolved: dict[tuple[int, int, int, int, int, int], int] = {}

    def __repr__(self) -> str:
        return f"Zone({self.key!r})"

    def offset_at(self, ts: int) -> int:
        """The UTC offset in seconds at instant ``ts``."""
        if self.fixed_offset is not None:
            return self.fixed_offset
        off = datetime.fromtimestamp(ts, self.info).utcoffset()
        assert off is not None
        return int(off.total_seconds())

    def local(self, ts: int) -> datetime:
        """Instant ``ts`` as an aware datetime in this zone (with its local offset)."""
        return datetime.fromtimestamp(ts, self.info)

    def _year(self, year: int) -> tuple[list[int], list[tuple[int, int, int]]]:
        got = self._years.get(year)
        if got is not None:
            return got
        start = days_from_civil(year, 1, 1) * 86400
        end = days_from_civil(year + 1, 1, 1) * 86400
        found: list[tuple[int, int, int]] = []
        prev_ts, prev_off = start, self.offset_at(start)
        ts = start
        while ts < end:
            ts = min(ts + _PROBE_STEP, end)
            off = self.offset_at(ts)
            if off != prev_off:
                lo, hi = prev_ts, ts  # offset(lo) == prev_off, offset(hi) == off
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self.offset_at(mid) == prev_off:
                        lo = mid
                    else:
                        hi = mid
                found.append((hi, prev_off, off))
            prev_ts, prev_off = ts, off
        got = ([t for t, _, _ in found], found)
        self._years[year] = got
        return got

    def first_transition(self, after: int, until: int) -> tuple[int, int, int] | None:
        """The first offset change at an instant T with ``after < T <= until``.

        Returns ``(T, offset_before, offset_after)`` or None.
        """
        if self.fixed_offset is not None or until <= after:
            return None
        y0 = (EPOCH + timedelta(seconds=after)).year
        y1 = (EPOCH + timedelta(seconds=until)).year
        for year in range(y0, y1 + 1):
            times, found = self._year(year)
            i = bisect_right(times, after)
            if i < len(times):
                return found[i] if times[i] <= until else None
        return None

    def resolve_fixed(self, y: int, mo: int, d: int, h: int, mi: int, s: int) -> int:
        """The instant of a local wall-clock time under the fixed-time rule.

        A time that exists once is that instant; one that occurs twice is its first
        occurrence; one inside a spring-forward gap is the first instant after the gap.
        """
        key = (y, mo, d, h, mi, s)
        got = self._resolved.get(key)
        if got is None:
            got = self._resolve(y, mo, d, h, mi, s)
            if len(self._resolved) >= _RESOLVED_MAX:
                self._resolved.clear()
            self._resolved[key] = got
        return got

    def _resolve(self, y: int, mo: int, d: int, h: int, mi: int, s: int) -> int:
        wall = wall_seconds(y, mo, d, h, mi, s)
        if self.fixed_offset is not None:
            return wall - self.fixed_offset
        off0 = datetime(y, mo, d, h, mi, s, tzinfo=self.info).utcoffset()
        off1 = datetime(y, mo, d, h, mi, s, tzinfo=self.info, fold=1).utcoffset()
        assert off0 is not None and off1 is not None
        o0, o1 = int(off0.total_seconds()), int(off1.total_seconds())
        if o0 >= o1:  # exists once, or twice (first occurrence uses the earlier offset)
            return wall - o0
        # inside a gap: the transition lies between the two candidate instants
        tr = self.first_transition(wall - o1 - 1, wall - o0)
        if tr is None:  # pragma: no cover - zoneinfo and the probe disagree
            return wall - o0
        return tr[0]

    def local_fields(self, ts: int) -> tuple[int, int, int, int, int, int, int]:
        """Wall-clock fields (year, month, day, hour, minute, second) of instant ``ts`` in
        this zone, and the UTC offset in seconds there."""
        last = self._last_local
        if last is not None and last[0] == ts:
            return last[1]
        if self.fixed_offset is not None:
            off = self.fixed_offset
            fields = (*wall_tuple(ts + off), off)
        else:
            loc = datetime.fromtimestamp(ts, self.info)
            delta = loc.utcoffset()
            assert delta is not None
            fields = (
                loc.year,
                loc.month,
                loc.day,
                loc.hour,
                loc.minute,
                loc.second,
                delta.days * 86400 + delta.seconds,
            )
        self._last_local = (ts, fields)
        return fields


_ZONES: dict[str, Zone] = {}


def get_zone(name: str) -> Zone:
    """The :class:`Zone` for an IANA name; raises :class:`UnknownTimezone`.

    Only names of the tz database: what zoneinfo would also load but stands for the host's
    configuration (``localtime``, ``posixrules``, ``Factory``, ``right/...``, ``posix/...``)
    is refused with the reason.
    """
    got = _ZONES.get(name)
    if got is not None:
        return got
    if not isinstance(name, str) or not name or name != name.strip():
        raise UnknownTimezone(str(name))
    why = _not_a_zone(name)
    if why is not None:
        raise UnknownTimezone(name, why)
    try:
        info = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as e:
        raise UnknownTimezone(name) from e
    zone = Zone(name, info)
    _ZONES[name] = zone
    return zone


def clear_caches() -> None:
    """Forget every zone and what it remembers (for benchmarks that want a cold start)."""
    _ZONES.clear()


def next_fixed(expr: CronExpression, zone: Zone, after: int) -> int | None:
    """The first slot strictly after instant ``after`` under the fixed-time rule."""
    y, mo, d, h, mi, s, _ = zone.local_fields(after)
    cand = expr.next_local(y, mo, d, h, mi, s + 1)
    while cand is not None:
        ts = zone.resolve_fixed(*cand)
        if ts > after:
            return ts
        cand = expr.next_local(cand[0], cand[1], cand[2], cand[3], cand[4], cand[5] + 1)
    return None


def next_real(expr: CronExpression, zone: Zone, after: int) -> int | None:
    """The first instant strictly after ``after`` whose local wall-clock time matches."""
    y, mo, d, h, mi, s, off = zone.local_fields(after)
    cand = expr.next_local(y, mo, d, h, mi, s + 1)
    seg_start = after
    while cand is not None:
        ts = wall_seconds(*cand) - off
        tr = zone.first_transition(seg_start, ts)
        if tr is None:
            return ts
        seg_start, _, off = tr
        cand = expr.next_local(*wall_tuple(seg_start + off))
    return None
