"""``requireSignedCommits`` end to end, on real Git repositories with commits signed by real
``ssh-keygen`` keys (and a real OpenPGP key where ``gpg`` is installed), against a real
``serve`` (fake executor) on SQLite and PostgreSQL, and through ``plan`` and ``apply``.

The daemon applies a signed commit and records its key; an unsigned tip, a tip signed by a key
that only that commit adds and a tip signed by an untrusted key each stall with their
diagnostic while the previous state stays in force; a later properly signed commit is applied.
Every run carries its provenance (``runs show``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from reconciler.model.settings import parse_signing_key
from reconciler.stores import open_store
from tests.gitutil import git
from tests.signing import gpg_commit, gpg_key, settings_with_keys, ssh_commit, ssh_key

from .conftest import Serve, schedule, until, write_repo


def _cli(
    state: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args, "--state", state],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _fingerprint(pub_file: Path) -> str:
    """The key's SHA-256 fingerprint as ``ssh-keygen -l`` prints it (not our own code)."""
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(pub_file)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[1]


def _status(s: Serve) -> dict[str, Any]:
    return s.get("/api/status")


def _attempted(s: Serve, sha: str) -> dict[str, Any]:
    until(lambda: (_status(s)["attempted"] or {}).get("revision") == sha, 15, f"attempt {sha}")
    return _status(s)


def test_serve_applies_signed_commits_and_stalls_on_unsigned_and_untrusted_ones(
    tmp_path: Path, state_url: str, serves: list[Serve]
) -> None:
    keys = tmp_path / "keys"
    k1, pub1 = ssh_key(keys, "k1")
    k2, pub2 = ssh_key(keys, "k2")
    k3, _ = ssh_key(keys, "k3")
    ident1 = f"ssh-ed25519 {_fingerprint(keys / 'k1.pub')}"
    ident2 = f"ssh-ed25519 {_fingerprint(keys / 'k2.pub')}"
    repo = write_repo(
        tmp_path / "repo",
        {"tick": schedule("tick", "{every: 1s}")},
        {"reconciler.yaml": settings_with_keys(pub1)},
    )
    git(repo, "init", "-q", "-b", "main")
    # nothing is applied yet: the commit's own keys count, and it is signed by one of them
    first = ssh_commit(repo, "initial, signed", k1)
    s = Serve(repo, state_url, "--workers", "1", "--poll", "1h")
    serves.append(s)
    until(lambda: _status(s)["applied"]["revision"] == first, 20, "the first apply")
    assert _status(s)["applied"]["signing_key"] == ident1

    # an unsigned tip stalls; the signed state stays in force
    (repo / "schedules" / "extra.yaml").write_text(schedule("extra", '{cron: "0 3 * * *"}'))
    unsigned = ssh_commit(repo, "unsigned", None)
    st = _attempted(s, unsigned)
    assert st["applied"]["revision"] == first and st["applied"]["signing_key"] == ident1
    assert st["attempted"]["ok"] is False
    assert [d["code"] for d in st["attempted"]["diagnostics"]] == ["commit-unsigned"]
    out = _cli(state_url, "status")
    assert out.returncode == 0, out.stderr
    assert f"signed by {ident1}" in out.stdout and "error[commit-unsigned]" in out.stdout

    # a commit that adds k2 and is signed by k2: only keys already trusted count
    (repo / "reconciler.yaml").write_text(settings_with_keys(pub1, pub2))
    self_trusted = ssh_commit(repo, "adds k2, signed by k2", k2)
    st = _attempted(s, self_trusted)
    assert st["applied"]["revision"] == first
    diag = st["attempted"]["diagnostics"][0]
    assert diag["code"] == "commit-bad-signature" and ident2 in diag["message"]
    assert "not one of the trusted keys" in diag["message"]

    # a commit signed by a key that is trusted nowhere stalls too
    git(repo, "reset", "-q", "--hard", unsigned)
    (repo / "schedules" / "other.yaml").write_text(schedule("other", '{cron: "0 4 * * *"}'))
    untrusted = ssh_commit(repo, "signed by k3", k3)
    st = _attempted(s, untrusted)
    assert st["applied"]["revision"] == first
    assert st["attempted"]["diagnostics"][0]["code"] == "commit-bad-signature"
    with open_store(state_url) as store:
        assert store.get_object("Schedule", "extra") is None
        assert store.get_object("Schedule", "other") is None

    # k1 (trusted) signs the commit that adds k2: applied; then k2 may sign
    (repo / "reconciler.yaml").write_text(settings_with_keys(pub1, pub2))
    adds_k2 = ssh_commit(repo, "adds k2, signed by k1", k1)
    until(lambda: _status(s)["applied"]["revision"] == adds_k2, 15, "the k1-signed commit")
    assert _status(s)["applied"]["signing_key"] == ident1
    (repo / "schedules" / "late.yaml").write_text(schedule("late", '{cron: "0 5 * * *"}'))
    by_k2 = ssh_commit(repo, "signed by k2, now trusted", k2)
    until(lambda: _status(s)["applied"]["revision"] == by_k2, 15, "the k2-signed commit")
    st = _status(s)
    assert st["applied"]["signing_key"] == ident2 and st["attempted"]["ok"] is True
    with open_store(state_url) as store:
        assert store.get_object("Schedule", "other") is not None
        history = {h.revision: h.signing_key for h in store.history()}
        assert history[first] == ident1 and history[adds_k2] == ident1
        assert history[by_k2] == ident2
        until(lambda: store.list_runs("tick", "succeeded", limit=1), 20, "a run of tick")
        tick_run = store.list_runs("tick", "succeeded", limit=1)[0]
    replicas = {r["id"] for r in _status(s)["replicas"]}

    # provenance of a scheduled run: the commit that applied its schedule, signed by k1
    shown = _cli(state_url, "runs", "show", str(tick_run.id), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    prov = json.loads(shown.stdout)["provenance"]
    assert prov == {
        "commit": first,
        "signing_key": ident1,
        "content_hash": None,
        "approvers": [],
        "trigger": "schedule",
        "slot": prov["slot"],
        "replica": prov["replica"],
    }
    assert prov["slot"] is not None and prov["replica"] in replicas
    # a CLI run, queued for the daemon and run by its worker: the commit in force, by k2
    done = _cli(state_url, "run", "ping", "--wait", "--format", "json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["id"]
    shown = _cli(state_url, "runs", "show", str(run_id), "--format", "json")
    prov = json.loads(shown.stdout)["provenance"]
    assert prov == {
        "commit": by_k2,
        "signing_key": ident2,
        "content_hash": None,
        "approvers": [],
        "trigger": "cli",
        "slot": None,
        "replica": prov["replica"],
    }
    assert prov["replica"] in replicas
    text = _cli(state_url, "runs", "show", str(run_id))
    assert "Provenance:" in text.stdout and f"signing key  {ident2}" in text.stdout
    assert f"replica      {prov['replica']}" in text.stdout
    s.signal(signal.SIGTERM)
    assert s.wait(60) == 0
    assert "Traceback" not in s.log.read_text()


def test_plan_and_apply_refuse_unsigned_commits_and_record_the_signing_key(
    tmp_path: Path,
) -> None:
    k1, pub1 = ssh_key(tmp_path / "keys", "k1")
    repo = write_repo(tmp_path / "repo", {}, {"reconciler.yaml": settings_with_keys(pub1)})
    git(repo, "init", "-q", "-b", "main")
    ssh_commit(repo, "unsigned", None)
    state = str(tmp_path / "state.sqlite")
    planned = _cli(state, "plan", str(repo))
    assert planned.returncode == 1
    assert planned.stderr.count("\n") == 1 and "error[commit-unsigned]" in planned.stderr
    as_json = _cli(state, "plan", str(repo), "--format", "json")
    assert as_json.returncode == 1
    assert [d["code"] for d in json.loads(as_json.stdout)["diagnostics"]] == ["commit-unsigned"]
    applied = _cli(state, "apply", str(repo), "--yes")
    assert applied.returncode == 1 and applied.stderr.count("\n") == 1
    assert "commit-unsigned" in applied.stderr and "Traceback" not in applied.stderr
    assert not Path(state).exists()  # nothing was applied, not even an empty state
    signed = ssh_commit(repo, "signed", k1)
    applied = _cli(state, "apply", str(repo), "--yes")
    assert applied.returncode == 0, applied.stderr
    ident = parse_signing_key(pub1).ident
    status = json.loads(_cli(state, "status", "--format", "json").stdout)
    assert status["applied"] == {**status["applied"], "revision": signed, "signing_key": ident}
    # a saved plan of an unsigned commit is refused at apply as well
    (repo / "schedules" / "x.yaml").write_text(schedule("x", '{cron: "0 3 * * *"}'))
    ssh_commit(repo, "unsigned again", None)
    saved = tmp_path / "plan.json"
    assert _cli(state, "plan", str(repo), "--out", str(saved)).returncode == 1
    with open_store(state) as store:
        assert store.history()[0].signing_key == ident and store.info().revision == signed


def test_a_plain_directory_cannot_satisfy_require_signed_commits(tmp_path: Path) -> None:
    _, pub1 = ssh_key(tmp_path / "keys", "k1")
    plain = write_repo(tmp_path / "plain", {}, {"reconciler.yaml": settings_with_keys(pub1)})
    state = str(tmp_path / "state.sqlite")
    applied = _cli(state, "apply", str(plain), "--yes")
    assert applied.returncode == 1 and applied.stderr.count("\n") == 1
    assert "error[commit-unverifiable]" in applied.stderr
    assert "not a Git commit" in applied.stderr


def test_openpgp_signed_commits_verify_against_their_fingerprint(tmp_path: Path) -> None:
    """gpg is installed here (``command -v gpg``): a real key in a private GNUPGHOME signs."""
    assert shutil.which("gpg"), "gpg is expected on this machine; see the docs for without it"
    home = tmp_path / "gnupg"
    try:
        fpr = gpg_key(home)
        repo = write_repo(tmp_path / "repo", {}, {"reconciler.yaml": settings_with_keys(fpr)})
        git(repo, "init", "-q", "-b", "main")
        signed = gpg_commit(repo, "signed with OpenPGP", home, fpr)
        state = str(tmp_path / "state.sqlite")
        env = {"GNUPGHOME": str(home)}
        applied = _cli(state, "apply", str(repo), "--yes", env=env)
        assert applied.returncode == 0, applied.stderr
        status = json.loads(_cli(state, "status", "--format", "json").stdout)
        assert status["applied"]["revision"] == signed
        assert status["applied"]["signing_key"] == fpr.upper()
        # the same signature, checked where no trusted fingerprint matches, is refused
        (repo / "reconciler.yaml").write_text(settings_with_keys("AB" * 20))
        other = gpg_commit(repo, "trusts another key only", home, fpr)
        moved = _cli(state, "apply", str(repo), "--yes", env=env)
        assert moved.returncode == 0, moved.stderr  # the key in force is still fpr
        assert (
            json.loads(_cli(state, "status", "--format", "json").stdout)["applied"]["revision"]
            == other
        )
        (repo / "schedules" / "x.yaml").write_text(schedule("x", '{cron: "0 3 * * *"}'))
        gpg_commit(repo, "signed by a key no longer trusted", home, fpr)
        refused = _cli(state, "apply", str(repo), "--yes", env=env)
        assert refused.returncode == 1 and "error[commit-bad-signature]" in refused.stderr
        assert fpr.upper() in refused.stderr and "not one of the trusted keys" in refused.stderr
        # where gpg is not on the PATH, a configured fingerprint is one clear error
        no_tools = tmp_path / "empty-bin"
        no_tools.mkdir()
        missing = _cli(state, "plan", str(repo), env={**env, "PATH": str(no_tools)})
        assert missing.returncode == 1 and missing.stderr.count("\n") == 1
        assert "error[commit-unverifiable]" in missing.stderr
        assert "gpg is not installed" in missing.stderr
    finally:
        subprocess.run(
            ["gpgconf", "--kill", "all"],
            env={**os.environ, "GNUPGHOME": str(home)},
            capture_output=True,
            check=False,
            timeout=30,
        )
