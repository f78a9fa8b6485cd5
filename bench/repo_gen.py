"""Generate large realistic repositories for the benchmarks (real Git repositories)."""

from __future__ import annotations

import subprocess
from pathlib import Path

FORMS = [
    'when: {daily: {at: "%02d:%02d"}}',
    'when: {weekly: {days: [mon, thu], at: "%02d:%02d"}}',
    'when: {cron: "%d %d * * 1-5"}',
    'when: {cron: "0 %d %d ? * MON-FRI"}',
    'when: {monthly: {day: last, at: "%02d:%02d"}}',
]

BASE = {
    "reconciler.yaml": (
        "apiVersion: reconciler/v1\nkind: Settings\nspec: {timezone: Europe/Berlin}\n"
    ),
    "inventory.yaml": """apiVersion: reconciler/v1
kind: Inventory
metadata: {name: fleet}
spec:
  roles: {web: {}, db: {}}
  environments: {production: {}, staging: {}}
  servers:
%s
""",
    "policy.yaml": """apiVersion: reconciler/v1
kind: Policy
metadata: {name: ops}
spec:
  users: [{name: alice, email: alice@example.com, groups: [sre]}]
  permissions: [{group: sre, run: ["*"], approve: ["*"]}]
""",
    "templates.yaml": """apiVersion: reconciler/v1
kind: JobTemplate
metadata: {name: patch}
spec:
  type: configuration
  playbook: playbooks/patch.yml
  variables:
    - {name: level, type: choice, choices: [security, all], default: security}
    - {name: reboot, type: boolean, default: false}
""",
    "playbooks/patch.yml": (
        "- hosts: all\n  gather_facts: false\n  tasks: [{ansible.builtin.ping: {}}]\n"
    ),
}


def schedule_doc(i: int, tweak: int = 0) -> str:
    form = FORMS[i % len(FORMS)]
    hour, minute = (i + tweak) % 24, (i * 7 + tweak) % 60
    when = form % ((minute, hour) if "cron" in form and "?" not in form else (hour, minute))
    if "?" in form:
        when = form % (minute, hour)
    role = "web" if i % 2 else "db"
    return f"""# generated schedule {i}
apiVersion: reconciler/v1
kind: Schedule
metadata:
  name: patch-{i:05d}
  description: Patch group {i} of the fleet
  labels: {{team: ops, tier: "{role}"}}
spec:
  template: patch
  owner: alice
  targets:
    roles: [{role}]
    environments: [production]
  {when}
  variables:
    level: security
    reboot: false
  misfire: {{policy: once, window: 2h}}
  overlap: skip
  notify: []
"""


def generate(root: Path, schedules: int, servers: int = 50) -> Path:
    """Write and commit a repository with ``schedules`` Schedule files; returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    server_lines = "\n".join(
        f"    - {{name: srv-{j:03d}, host: 10.0.{j // 250}.{j % 250 + 1}, "
        f"roles: [{'web' if j % 2 else 'db'}], environments: [production]}}"
        for j in range(servers)
    )
    for rel, text in BASE.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text % server_lines if "%s" in text else text)
    sched = root / "schedules"
    sched.mkdir(exist_ok=True)
    for i in range(schedules):
        (sched / f"patch-{i:05d}.yaml").write_text(schedule_doc(i))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "generated")
    return root


def git(root: Path, *args: str) -> str:
    env_args = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    out = subprocess.run(
        ["git", *env_args, *args], cwd=root, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def commit_one_change(root: Path, i: int = 7, tweak: int = 1) -> str:
    (root / "schedules" / f"patch-{i:05d}.yaml").write_text(schedule_doc(i, tweak))
    git(root, "commit", "-q", "-am", f"change schedule {i}")
    return git(root, "rev-parse", "HEAD")
