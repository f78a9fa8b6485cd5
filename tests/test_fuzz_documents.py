"""The suite's own fuzzer: hostile edits of the documents of ``example-repo/``, through the
real CLI. Whatever a file holds, ``validate``, ``plan`` and ``apply`` end with exit 0 or 1,
print one JSON document on stdout, never a traceback, and every diagnostic has a position.

Each example copies the example repository to a plain directory and splices one or two
edits into its YAML text, at the nodes a YAML parser finds there: explicit tags (fitting or
not), numbers (integers past Python's integer-string limit, huge hexadecimals, infinities),
durations, instants and time zones (at the fields that hold them, or in a whole new ``when``),
unicode (control characters, lone surrogates, right-to-left marks), deep nesting, and anchors
with aliases (also recursive ones). ``validate --format json`` runs on every example; ``plan``
and ``apply`` on a SQLite state (and ``schedules`` after a successful apply) run on every
example that validates and on a share of those that do not, since some crashes hit only
planning and applying. The CLI runs in-process (click's CliRunner with
``catch_exceptions=False``), so any exception fails the example, and Hypothesis shrinks it.

CI runs 800 examples (about 15 s); ``RECONCILER_FUZZ_EXAMPLES=20000`` runs a longer hunt.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example-repo"


@dataclass(frozen=True)
class Site:
    """A node of one file where an edit can go: its text span and what holds it."""

    path: str
    start: int
    end: int
    key: str  #: the mapping key whose value the node is ("" for keys and sequence items)
    block: bool  #: a block collection (its span runs up to the next line's indentation)
    end_column: int


def _sites(path: str, text: str) -> list[Site]:
    out: list[Site] = []

    def walk(node: yaml.Node, key: str) -> None:
        block = not isinstance(node, yaml.ScalarNode) and not node.flow_style
        out.append(
            Site(path, node.start_mark.index, node.end_mark.index, key, block, node.end_mark.column)
        )
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(k, "")
                walk(v, str(k.value) if isinstance(k, yaml.ScalarNode) else "")
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value:
                walk(child, "")

    for doc in yaml.compose_all(text, Loader=yaml.SafeLoader):
        walk(doc, "")
    return out


FILES = {
    str(p.relative_to(EXAMPLE)): p.read_text()
    for p in sorted(EXAMPLE.rglob("*"))
    if p.suffix in (".yaml", ".yml") and p.is_file()
}
SITES = [s for path, text in FILES.items() for s in _sites(path, text)]
BY_KEY: dict[str, list[Site]] = {}
for _s in SITES:
    BY_KEY.setdefault(_s.key, []).append(_s)

DURATION_KEYS = ("every", "jitter", "timeout", "window")
INSTANT_KEYS = ("start", "at")
ZONE_KEYS = ("timezone",)

# -- what goes in ---------------------------------------------------------------------------

TAGS = st.sampled_from(
    [
        "!!map",
        "!!seq",
        "!!set",
        "!!omap",
        "!!pairs",
        "!!str",
        "!!int",
        "!!float",
        "!!bool",
        "!!null",
        "!!timestamp",
        "!!binary",
        "!!merge",
        "!foo",
        "!!python/object/apply:os.system",
        "!",
    ]
)
TAG_VALUES = st.sampled_from(
    [
        *("x", "[a]", "{a: 1}", "1", "0x1f", "1.5", "true", "yes", '""', "aGk=", "/w==", "~"),
        *(".nan", "-.inf", "2026-01-01 02:00:00 +05", "[a, a]", "{a: 1, a: 2}", "[{a: 1}]"),
        *("2026-01-01", "2026-13-45", "9999-12-31T23:59:59Z", "0000-01-01", "[[a, b]]", "{? a}"),
    ]
)
DIGITS = st.text("0123456789", min_size=1, max_size=30)
NUMBERS = st.one_of(
    st.integers(4290, 4400).map(lambda n: "9" * n),
    st.integers(1, 30).map(lambda n: "-" + "1" * n),
    st.integers(3500, 4000).map(lambda n: "0x" + "f" * n),
    st.integers(1, 5000).map(lambda n: "0o" + "7" * n),
    DIGITS,
    st.sampled_from(["1e400", "-1e400", ".inf", "-.inf", ".nan", "-0", "0.0", "1_000", "0b1"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
UNITS = st.sampled_from(["s", "m", "h", "d", "w", "", "ms", "D"])
DURATIONS = st.one_of(
    st.builds(lambda n, u: f"{n}{u}", st.integers(1, 36500), st.sampled_from("smhd")),
    st.builds(lambda n, u: f"{n}{u}", DIGITS, UNITS),
    st.builds(lambda a, b: f"{a}d{b}h", DIGITS, DIGITS),
    st.sampled_from(["0s", "36500d", "36501d", "3153600000s", "3153600001s", "1h30m", "-5m"]),
    st.integers(-(10**30), 10**30).map(str),
)


INSTANTS = st.builds(
    lambda y, mo, d, h, mi, s, frac, tz, quote: (
        f"{quote}{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{tz}{quote}"
    ),
    st.one_of(st.integers(2020, 2030), st.integers(1969, 1971), st.integers(8999, 9001)).map(
        lambda y: f"{y:04d}"
    )
    | st.integers(0, 99999).map(lambda y: f"{y:04d}"),
    st.one_of(st.integers(1, 12), st.integers(0, 13)),
    st.one_of(st.integers(1, 28), st.integers(0, 32)),
    st.one_of(st.integers(0, 23), st.integers(0, 25)),
    st.one_of(st.integers(0, 59), st.integers(0, 61)),
    st.one_of(st.integers(0, 59), st.integers(0, 61)),
    st.sampled_from(["", ".5", ".999999", ".1234567"]),
    st.sampled_from(["", "Z", "+14:00", "-12:00", "+23:59", "-23:59", "+05:30", "+0000"]),
    st.sampled_from(['"', "", "'"]),
) | st.sampled_from(["2026-01-01", "1970-01-01T00:00:00", "9000-12-31T23:59:59", "now", "1e10"])
VALID_ZONES = st.sampled_from(
    [
        "UTC",
        "Europe/Berlin",
        "Etc/GMT+12",
        "Etc/GMT-14",
        "Pacific/Kiritimati",
        "Asia/Kolkata",
        "America/St_Johns",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "America/Sao_Paulo",
        "EST5EDT",
    ]
)
#: Names zoneinfo may load that are no IANA zones, paths, near misses; quoted ones as written
ODD_ZONES = st.sampled_from(
    [
        "localtime",
        "posixrules",
        "Factory",
        "right/UTC",
        "posix/Europe/Berlin",
        "utc",
        "../etc/passwd",
        "zone.tab",
        "/etc/localtime",
        "Europe/../UTC",
        "tzdata.zi",
        '""',
        '"Europe/Berlin\\n"',
        '"Europe\\x00Berlin"',
    ]
)
ZONES = VALID_ZONES | ODD_ZONES | st.text(max_size=20).map(json.dumps)
CRONS = st.lists(
    st.sampled_from(["*", "?", "L", "W", "LW", "5L", "2#5", "*/0", "0", "59", "60", "1-5", "MON"])
    | DIGITS,
    min_size=1,
    max_size=8,
).map(lambda parts: json.dumps(" ".join(parts)))
UNICODE = st.one_of(
    st.text(st.characters(blacklist_categories=()), max_size=40).map(json.dumps),
    st.sampled_from(["\ud800", "\udfff", "\u202e", "\x00", "\x1b[31m", "\u2028", "\ufeff"]).map(
        json.dumps
    ),
    st.text(st.characters(blacklist_categories=()), max_size=40),
)
NESTING = st.integers(1, 160).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, "{a: " * n + "1" + "}" * n, "[" * n + "x"])
)
FORMS = st.one_of(
    st.builds(lambda d: f"every: {d}", DURATIONS),
    st.builds(lambda i: f"at: {i}", INSTANTS),
    st.builds(lambda c: f"cron: {c}", CRONS),
    st.just('daily: {at: "02:00"}'),
    st.builds(
        lambda n: f"monthly: {{day: {n}, at: '03:00'}}", st.sampled_from(["31", "last", "0"])
    ),
    st.builds(
        lambda m: f"yearly: {{month: {m}, day: 29, at: '00:00'}}", st.sampled_from(["feb", "2"])
    ),
)


@st.composite
def whens(draw: st.DrawFn) -> str:
    """A whole ``when`` as a flow mapping: a form and any of its companions."""
    parts = [draw(FORMS)]
    if draw(st.booleans()):
        parts.append(f"timezone: {draw(ZONES)}")
    if draw(st.booleans()):
        parts.append(f"start: {draw(INSTANTS)}")
    if draw(st.booleans()):
        parts.append(f"end: {draw(INSTANTS)}")
    if draw(st.booleans()):
        parts.append(f"jitter: {draw(DURATIONS)}")
    return "{" + ", ".join(parts) + "}"


def _at_keys(keys: tuple[str, ...]) -> st.SearchStrategy[Site]:
    return st.sampled_from([s for k in keys for s in BY_KEY.get(k, [])])


ANY_SITE = st.sampled_from(SITES)
#: Edits of the time fields come first and twice: they reach plan and apply most often.
TIME_EDITS = st.one_of(
    st.tuples(_at_keys(DURATION_KEYS), DURATIONS),
    st.tuples(_at_keys(INSTANT_KEYS), INSTANTS),
    st.tuples(_at_keys(ZONE_KEYS), ZONES),
    st.tuples(_at_keys(("cron",)), CRONS),
    st.tuples(_at_keys(("when",)), whens()),
)
EDITS = st.one_of(
    TIME_EDITS,
    TIME_EDITS,
    st.tuples(ANY_SITE, st.builds(lambda t, v: f"{t} {v}", TAGS, TAG_VALUES)),
    st.tuples(ANY_SITE, NUMBERS),
    st.tuples(ANY_SITE, UNICODE),
    st.tuples(ANY_SITE, NESTING),
    st.tuples(ANY_SITE, st.just("ALIAS")),
)


@st.composite
def edited_files(draw: st.DrawFn) -> dict[str, str]:
    """The YAML files of the example repository after one or two edits."""
    edits: dict[str, list[tuple[int, int, str]]] = {}
    for site, value in draw(st.lists(EDITS, min_size=1, max_size=2)):
        if value == "ALIAS":  # an anchor on one node of the file, an alias at another
            anchor = draw(st.sampled_from([s for s in SITES if s.path == site.path]))
            name = draw(st.sampled_from(["a", "b"]))
            edits.setdefault(site.path, []).append((anchor.start, anchor.start, f"&{name} "))
            value = draw(st.sampled_from([f"*{name}", f"{{<<: *{name}, x: 1}}", f"[*{name}]"]))
        if site.block:  # keep what follows the block at its own indentation
            value += "\n" + " " * site.end_column
        edits.setdefault(site.path, []).append((site.start, site.end, value))
    out = dict(FILES)
    for path, spans in edits.items():
        text = out[path]
        # from the end, so earlier offsets stay right; an edit inside a replaced span is lost
        done = len(text) + 1
        for start, end, value in sorted(spans, key=lambda e: (e[0], e[1]), reverse=True):
            if end > done:
                continue
            text = text[:start] + value + text[end:]
            done = start
        out[path] = text
    return out


# -- what must come out ---------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON")


def one_json_document(stdout: str) -> Any:
    """stdout holds exactly one JSON document (strict: no NaN or Infinity)."""
    return json.loads(stdout, parse_constant=_no_constant)


def run(*args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code in (0, 1), (args, result.exit_code, result.output)
    return result.exit_code, one_json_document(result.stdout)


def positioned(doc: Any, files: dict[str, str]) -> None:
    for d in doc.get("diagnostics", []):
        assert d["path"], d
        assert isinstance(d["line"], int) and d["line"] >= 1, d
        assert isinstance(d["column"], int) and d["column"] >= 1, d
        assert d["severity"] in ("error", "warning"), d
        assert d["code"] and d["message"], d


@settings(
    max_examples=int(os.environ.get("RECONCILER_FUZZ_EXAMPLES", "800")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(files=edited_files(), deeper=st.integers(0, 3))
def test_no_edit_of_the_example_documents_makes_validate_plan_or_apply_crash(
    files: dict[str, str], deeper: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(EXAMPLE, repo)
        for path, text in files.items():
            # a raw lone surrogate becomes bytes that are not UTF-8 (file-encoding)
            (repo / path).write_bytes(text.encode("utf-8", "surrogatepass"))
        code, doc = run("validate", str(repo), "--format", "json")
        event(f"validate exit {code}")
        for d in doc["diagnostics"]:
            event(f"code {d['code']}")
        positioned(doc, files)
        assert (code == 1) == (doc["errors"] > 0), doc
        if code == 1 and deeper:  # 1 in 4 invalid examples: plan and apply refuse cleanly
            return
        state = str(Path(tmp) / "state.db")
        plan_code, plan = run("plan", str(repo), "--format", "json", "--state", state)
        assert plan_code == code, plan
        positioned(plan, files)
        apply_code, applied = run("apply", str(repo), "--yes", "--format", "json", "--state", state)
        assert apply_code == code, applied
        positioned(applied, files)
        if code == 0:
            assert applied["applied"] is True
            _, listed = run("schedules", "--upcoming", "5", "--format", "json", "--state", state)
            for row in listed["schedules"]:
                for instant in row["next"]:
                    assert datetime.fromisoformat(instant).utcoffset() is not None, row
