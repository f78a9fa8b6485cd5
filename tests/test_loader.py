"""The loader below the CLI: the parse cache, Ansible inventory import and YAML 1.2 scalars."""

from __future__ import annotations

import os
import shutil
import tracemalloc
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.loading.loader import Loader, LoadResult
from reconciler.loading.yamlparse import parse
from reconciler.model.snapshot import Entry, Snapshot
from reconciler.sources.cache import SqliteParseCache
from reconciler.sources.directory import DirectorySnapshot
from reconciler.sources.git import GitSource, default_cache_dir
from tests.gitutil import git

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "tests" / "golden" / "validate" / "_base"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


class CountingSnapshot:
    """A real snapshot that records every file the loader reads from it."""

    def __init__(self, inner: Snapshot) -> None:
        self.inner = inner
        self.reads: list[str] = []

    @property
    def revision(self) -> str | None:
        return self.inner.revision

    @property
    def entries(self) -> Mapping[str, Entry]:
        return self.inner.entries

    def read(self, path: str) -> bytes:
        self.reads.append(path)
        return self.inner.read(path)


# -- the parse cache ---------------------------------------------------------------------


@pytest.fixture
def committed_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def load_in_new_process(repo: Path, rev: str) -> tuple[LoadResult, list[str]]:
    """A fresh Loader on the on-disk cache: what a second ``reconciler`` process does."""
    snap = CountingSnapshot(GitSource(str(repo)).snapshot(rev))
    cache = SqliteParseCache(default_cache_dir())
    try:
        return Loader(cache).load(snap, NOW), snap.reads
    finally:
        cache.close()


YAML_FILES = 7  # six document files and the playbook, which is YAML too


def test_a_second_load_of_the_same_revision_reads_no_file(committed_base: Path) -> None:
    first, reads = load_in_new_process(committed_base, "HEAD")
    assert first.ok, first.diagnostics
    assert (first.files_read, first.files_cached) == (YAML_FILES, 0)
    assert len(reads) == YAML_FILES
    assert (Path(os.environ["RECONCILER_CACHE_DIR"]) / "parse-cache.sqlite").is_file()

    second, reads = load_in_new_process(committed_base, "HEAD")
    assert second.ok
    assert (second.files_read, second.files_cached) == (0, YAML_FILES)
    assert reads == []
    assert second.desired is not None
    assert sorted(second.desired.schedules) == ["deploy-web-nightly"]


def test_the_same_loader_loading_again_counts_every_file_as_cached(
    committed_base: Path,
) -> None:
    loader = Loader()  # memory only
    snap = GitSource(str(committed_base)).snapshot("HEAD")
    assert loader.load(snap, NOW).files_read == YAML_FILES
    again = loader.load(CountingSnapshot(snap), NOW)
    assert (again.files_read, again.files_cached) == (0, YAML_FILES)


def test_a_revision_that_changes_one_file_parses_exactly_that_file(committed_base: Path) -> None:
    load_in_new_process(committed_base, "HEAD")
    policy = committed_base / "policy.yaml"
    policy.write_text(policy.read_text().replace("bob@example.com", "robert@example.com"))
    git(committed_base, "commit", "-q", "-am", "bob's new address")

    result, reads = load_in_new_process(committed_base, "HEAD")
    assert result.ok
    assert (result.files_read, result.files_cached) == (1, YAML_FILES - 1)
    assert reads == ["policy.yaml"]
    assert result.desired is not None
    assert result.desired.users["bob"].email == "robert@example.com"


# -- Ansible inventory files -------------------------------------------------------------

IMPORTING_INVENTORY = """\
apiVersion: reconciler/v1
kind: Inventory
metadata:
  name: site
spec:
  ansibleInventory:
    path: {path}
    roles: {{webservers: web, dbservers: db}}
    environments: {{prod: production, stage: staging}}
"""

INI_INVENTORY = """\
# an existing Ansible inventory
[webservers]
web-1 ansible_host=10.0.0.11 http_port=8080
web-2 ansible_host=10.0.0.12

[dbservers]
db-1 ansible_host=10.0.0.21

[prod]
web-1

[prod:children]
dbservers

[stage]
web-2

[prod:vars]
banner="PRODUCTION"
"""

YAML_INVENTORY = """\
all:
  children:
    webservers:
      hosts:
        web-1: {ansible_host: 10.0.0.11, http_port: 8080}
        web-2: {ansible_host: 10.0.0.12}
    dbservers:
      hosts:
        db-1: {ansible_host: 10.0.0.21}
    prod:
      hosts:
        web-1:
      children:
        dbservers:
      vars: {banner: PRODUCTION}
    stage:
      hosts:
        web-2:
"""


@pytest.mark.parametrize(
    ("path", "content"),
    [("ansible/hosts.ini", INI_INVENTORY), ("ansible/hosts.yml", YAML_INVENTORY)],
    ids=["ini", "yaml"],
)
def test_an_ansible_inventory_file_maps_groups_to_roles_and_environments(
    tmp_path: Path, path: str, content: str
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    (repo / "inventory.yaml").write_text(IMPORTING_INVENTORY.format(path=path))
    (repo / path).parent.mkdir()
    (repo / path).write_text(content)

    result = Loader().load(DirectorySnapshot(repo), NOW)
    assert result.diagnostics == []
    desired = result.desired
    assert desired is not None
    servers = {
        name: (s.host, s.roles, s.environments, s.vars) for name, s in desired.servers.items()
    }
    assert servers == {
        "web-1": ("10.0.0.11", ["web"], ["production"], {"http_port": 8080}),
        "web-2": ("10.0.0.12", ["web"], ["staging"], {}),
        "db-1": ("10.0.0.21", ["db"], ["production"], {}),
    }
    assert set(desired.roles) == {"web", "db"}
    assert set(desired.environments) == {"production", "staging"}
    assert desired.environments["production"].vars == {"banner": "PRODUCTION"}

    code = CliRunner().invoke(cli, ["validate", str(repo)]).exit_code
    assert code == 0


def test_a_missing_ansible_inventory_file_is_a_positioned_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    (repo / "inventory.yaml").write_text(IMPORTING_INVENTORY.format(path="ansible/hosts"))
    result = Loader().load(DirectorySnapshot(repo), NOW)
    first = result.diagnostics[0]
    assert (first.path, first.line, first.column, first.code) == (
        "inventory.yaml",
        7,
        11,
        "playbook-missing",
    )
    assert 'inventory file "ansible/hosts" does not exist' in first.message


def load_with_inventory_file(repo: Path, path: str, content: bytes) -> LoadResult:
    """The base repository whose Inventory imports ``path``, a file holding ``content``."""
    shutil.copytree(BASE, repo)
    (repo / "inventory.yaml").write_text(IMPORTING_INVENTORY.format(path=path))
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_bytes(content)
    return Loader().load(DirectorySnapshot(repo), NOW)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 10)}]\n" for a, b in zip("abcdef", "bcdefg", strict=True)
)


@pytest.mark.parametrize(
    ("path", "content", "expected"),
    [
        (
            "ansible/hosts.json",
            '{\n  "all": {"hosts": {"web-1": {}}},\n  "all": {}\n}\n',
            (3, 3, "yaml-duplicate-key", 'duplicate key "all" (first at line 2)'),
        ),
        ("ansible/hosts.json", '{"all": ' + "[" * 150 + "]" * 150 + "}", None),
        ("ansible/hosts.json", BOMB + "all: {hosts: {web-1: {v: *g}}}\n", None),
        (
            "ansible/hosts.json",
            "all: &all {children: {prod: *all}}\n",
            (1, 6, "yaml-alias-limit", "recursive"),
        ),
        (
            "ansible/hosts.json",
            "all: {vars: {a: " + "1" * 4301 + "}}\n",
            (1, 17, "yaml-value", "4301"),
        ),
        (
            "ansible/hosts.json",
            "all: {vars: {release_day: 2026-13-45}}\n",
            (1, 27, "yaml-value", "timestamp"),
        ),
        (
            "ansible/hosts.json",
            "all: {hosts: [web-1]}\n",
            (1, 1, "field-invalid", "hosts of group 'all' must be a mapping"),
        ),
        (
            "ansible/hosts.json",
            "all: {hosts: {web-1: [1]}}\n",
            (1, 1, "field-invalid", "variables of host 'web-1' must be a mapping"),
        ),
        (
            "ansible/hosts.json",
            "all: {vars: [a]}\n",
            (1, 1, "field-invalid", "vars of group 'all' must be a mapping"),
        ),
        (
            "ansible/hosts.json",
            "all: {hosts: {web-1: {a: !!binary /w==}}}\n",
            (1, 26, "field-invalid", "binary data (!!binary) has no JSON form"),
        ),
        (
            "ansible/hosts.json",
            "all: {vars: {limit: [1, .nan]}}\n",
            (1, 25, "field-invalid", "the number nan has no JSON form"),
        ),
        ("ansible/hosts", "[web]\nweb-1 note=" + "[" * 5000 + "\n", "keeps"),
    ],
    ids=[
        "duplicate-key",
        "nested-150-deep",
        "alias-bomb",
        "recursive-alias",
        "integer-of-4301-digits",
        "impossible-date",
        "hosts-as-a-list",
        "host-vars-as-a-list",
        "group-vars-as-a-list",
        "binary-data-in-host-vars",
        "nan-in-group-vars",
        "ini-value-nested-5000-deep",
    ],
)
def test_an_imported_inventory_file_gets_the_limits_of_every_repository_file(
    tmp_path: Path, path: str, content: str, expected: tuple[int, int, str, str] | str | None
) -> None:
    """A ``.json`` inventory is not one of the repository's YAML files, so only the import
    reads it: it used to go through plain yaml.safe_load, past every limit (and crash)."""
    result = load_with_inventory_file(tmp_path / "repo", path, content.encode())
    if expected == "keeps":  # a value that is no YAML scalar is kept as its text
        assert result.errors == 0
        assert result.desired is not None
        assert result.desired.servers["web-1"].vars == {"note": "[" * 5000}
        return
    (diag,) = [d for d in result.diagnostics if d.path == path]
    assert diag.message.startswith(f'Ansible inventory "{path}" (read by Inventory "site"): ')
    if expected is None:  # too deep or too big: the code and the limit are what matter
        assert diag.code in ("yaml-too-deep", "yaml-alias-limit")
        return
    line, column, code, words = expected
    assert (diag.line, diag.column, diag.code) == (line, column, code)
    assert words in diag.message


def test_an_inventory_file_keeps_reading_yaml_1_1_scalars_as_ansible_does(tmp_path: Path) -> None:
    content = b"all: {hosts: {web-1: {ansible_host: 10.0.0.11, gzip: yes, mode: 0644}}}\n"
    result = load_with_inventory_file(tmp_path / "repo", "ansible/hosts.json", content)
    assert result.errors == 0
    assert result.desired is not None
    assert result.desired.servers["web-1"].vars == {"gzip": True, "mode": 420}


def test_a_long_chain_of_ini_children_groups_is_read_without_recursion(tmp_path: Path) -> None:
    chain = "".join(f"[g{i}:children]\ng{i + 1}\n" for i in range(3000))
    content = f"[g3000]\nweb-1\n{chain}[prod:children]\ng0\n"
    result = load_with_inventory_file(tmp_path / "repo", "ansible/hosts", content.encode())
    assert result.errors == 0
    assert result.desired is not None
    assert result.desired.servers["web-1"].environments == ["production"]


def sparse_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)


def comment_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = b"# an inventory that grew past any reason\n"
    path.write_bytes(line * (size // len(line) + 1))


@pytest.mark.parametrize(
    ("path", "size", "make"),
    [("schedules/huge.yaml", 64 << 20, sparse_file), ("ansible/hosts", 16 << 20, comment_file)],
    ids=["sparse-yaml-file", "ini-inventory"],
)
def test_a_huge_working_tree_file_is_refused_by_its_size_without_being_read(
    tmp_path: Path, path: str, size: int, make: Callable[[Path, int], None]
) -> None:
    """The memory the load takes stays far below the file's size (it used to read it all:
    a 1 GiB sparse file took 1.1 GB), and an imported inventory gets the same limit."""
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    if path == "ansible/hosts":
        (repo / "inventory.yaml").write_text(IMPORTING_INVENTORY.format(path=path))
    make(repo / path, size)
    actual = (repo / path).stat().st_size
    tracemalloc.start()
    try:
        result = Loader().load(DirectorySnapshot(repo), NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    (diag,) = [d for d in result.diagnostics if d.path == path]
    assert (diag.path, diag.line, diag.column, diag.code) == (path, 1, 1, "file-too-large")
    assert f"{actual} bytes is over the limit of 1048576 bytes" in diag.message


# -- YAML 1.2 scalars --------------------------------------------------------------------


def test_yaml_1_2_keeps_on_as_a_key_times_of_day_and_yes_as_strings() -> None:
    text = b"on: [push]\nat: 02:00\nanswer: yes\nno: off\nmode: 0o17\nflag: true\n"
    parsed = parse("ci.yml", text)
    assert parsed.diagnostics == ()
    assert parsed.documents[0].data == {
        "on": ["push"],
        "at": "02:00",
        "answer": "yes",
        "no": "off",
        "mode": 15,
        "flag": True,
    }


def test_an_unquoted_time_of_day_and_yes_are_valid_in_documents(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    schedule = repo / "schedules" / "deploy-web-nightly.yaml"
    text = schedule.read_text()
    assert 'daily: {at: "02:00"}' in text and "release: stable" in text
    schedule.write_text(
        text.replace('daily: {at: "02:00"}', "daily: {at: 02:00}").replace(
            "release: stable", "release: yes"
        )
    )
    result = Loader().load(DirectorySnapshot(repo), NOW)
    assert result.diagnostics == []
    assert result.desired is not None
    spec = result.desired.schedules["deploy-web-nightly"].spec
    assert spec.when.daily is not None and spec.when.daily.at.hour == 2
    assert spec.variables["release"] == "yes"


# -- nesting depth -----------------------------------------------------------------------


def block_nesting(levels: int) -> bytes:
    lines = ["apiVersion: v1", "x:"]
    lines += ["  " * i + "k:" for i in range(1, levels)]
    lines.append("  " * levels + "v")
    return "\n".join(lines).encode()


def test_block_mappings_nested_past_the_limit_are_too_deep() -> None:
    (diag,) = parse("deep.yaml", block_nesting(150)).diagnostics
    assert (diag.code, diag.line, diag.column) == ("yaml-too-deep", 102, 201)


def test_flow_lists_nested_past_the_limit_are_too_deep_even_with_spaces() -> None:
    (diag,) = parse("deep.yaml", b"x: " + b"[ " * 150 + b"]" * 150).diagnostics
    assert diag.code == "yaml-too-deep"


def test_nesting_within_the_limit_is_fine() -> None:
    assert parse("ok.yaml", block_nesting(40)).diagnostics == ()
