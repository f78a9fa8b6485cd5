"""The dashboard's pure pieces: how instants and distances read, the timeline picture, where a
sign-in may redirect to, the CSRF token, and a schedule's ``when`` in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from reconciler.api.dashboard import render, session
from reconciler.engine.browsing import describe_when, schedule_detail
from reconciler.stores import open_store
from tests.daemon.conftest import apply_dir

NOW = datetime(2025, 3, 29, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def test_every_instant_reads_with_its_utc_offset_across_a_dst_change() -> None:
    assert (
        render.instant(datetime(2025, 3, 30, 1, 30, tzinfo=BERLIN)) == "2025-03-30 01:30:00 +01:00"
    )
    assert (
        render.instant(datetime(2025, 3, 30, 3, 30, tzinfo=BERLIN)) == "2025-03-30 03:30:00 +02:00"
    )
    assert render.instant("2025-03-30T01:00:00+00:00") == "2025-03-30 01:00:00 +00:00"
    assert render.instant(None) == "-"


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=0.2), "now"),
        (timedelta(seconds=45), "in 45 s"),
        (timedelta(minutes=59, seconds=59), "in 59 min"),
        (timedelta(hours=3, minutes=10), "in 3 h"),
        (timedelta(days=2, hours=23), "in 2 d"),
        (-timedelta(minutes=5), "5 min ago"),
    ],
)
def test_a_distance_from_now_is_rounded_down_to_its_largest_unit(
    delta: timedelta, text: str
) -> None:
    assert render.relative(NOW + delta, NOW) == text


def test_the_timeline_escapes_names_draws_a_mark_per_fire_and_a_band_when_capped() -> None:
    end = NOW + timedelta(hours=24)
    fires = [NOW + timedelta(hours=h) for h in (1, 2, 3)]
    same_pixel = [NOW + timedelta(hours=5), NOW + timedelta(hours=5, seconds=1)]
    svg = str(
        render.timeline_svg(
            [
                render.Lane("<script>x</script>", fires),
                render.Lane("dense", same_pixel),
                render.Lane("often", [NOW + timedelta(minutes=m) for m in (1, 2, 3)], True),
            ],
            NOW,
            end,
            "Europe/Berlin",
        )
    )
    assert "<script>" not in svg and "&lt;script&gt;x&lt;/script&gt;" in svg
    assert svg.count('class="fire"') == 3 + 1 + 3  # two fires in one pixel are one mark
    assert svg.count('class="dense"') == 1 and "about every 1 min" in svg
    # the axis is in the zone: 12:00 UTC is 13:00 in Berlin, so ticks at 15:00, 18:00, ...
    assert ">15:00<" in svg and ">Sun 30<" in svg


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("/runs/5?x=1", "/runs/5?x=1"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("runs", "/"),
        (None, "/"),
    ],
)
def test_a_sign_in_redirects_only_to_a_path_of_this_server(target: str | None, kept: str) -> None:
    assert session.local_path(target) == kept


def test_the_csrf_token_is_per_session_and_checked_whole() -> None:
    a, b = session.csrf_token("rk_key-a-0123456789"), session.csrf_token("rk_key-b-0123456789")
    assert a != b and len(a) == 64
    assert session.csrf_ok("rk_key-a-0123456789", a)
    assert not session.csrf_ok("rk_key-a-0123456789", b)
    assert not session.csrf_ok("rk_key-a-0123456789", a[:-1])
    assert not session.csrf_ok("rk_key-a-0123456789", "")
    assert "rk_key-a" not in a


EXAMPLE = {
    "deploy-web-weekly": "every Tuesday and Thursday at 06:30, Europe/Berlin time, each fire up "
    "to 5m after its slot (jitter)",
    "disk-report-daily": "every day at 02:00, Europe/Berlin time",
    "disk-report-hourly-simulated": "every 1h, Europe/Berlin time, from 2026-01-01 00:00:00",
    "disk-report-month-end": "on the last day of every month at 23:00, Europe/Berlin time",
    "disk-report-new-year": "every year on 1 January at 00:05, Europe/Berlin time",
    "motd-check-staging": "at 10:15 on Monday through Friday, America/New_York time",
    "motd-drift-production": "at every 30th minute, Europe/Berlin time",
}


def test_the_schedule_page_says_when_in_words_for_every_form_of_the_example(
    tmp_path: Path,
) -> None:
    """Every schedule of example-repo, applied to a real state, as its page describes it."""
    root = Path(__file__).resolve().parents[2] / "example-repo"
    with open_store(tmp_path / "state.sqlite") as store:
        apply_dir(store, root, NOW)
        said = {}
        for name in EXAMPLE:
            detail = schedule_detail(store, name)
            assert detail is not None
            said[name] = detail["when_text"]
    assert said == EXAMPLE


def test_a_when_this_version_cannot_read_is_shown_raw_only() -> None:
    assert describe_when({"cron": "not a cron"}, "UTC") is None
    assert describe_when({"hourly": {"at": ":05"}}, "UTC") is None
    assert describe_when({"weekly": {"days": "tue"}}, "UTC") is None
    assert describe_when({"at": "2026-05-01T02:00:00", "timezone": "Asia/Tokyo"}, "UTC") == (
        "once, at 2026-05-01 02:00:00, Asia/Tokyo time"
    )


def test_an_at_with_its_own_offset_names_no_time_zone() -> None:
    assert describe_when({"at": "2026-05-01T02:00:00+09:00"}, "Europe/Berlin") == (
        "once, at 2026-05-01 02:00:00+09:00"
    )
