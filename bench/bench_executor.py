"""Executor benchmark: overhead over bare ansible-playbook, remediation cost, throughput.

    python bench/bench_executor.py [--quick]

Medians, all measured in the same run on this machine:
1. a trivial one-task playbook on localhost: bare ``ansible-playbook`` vs ``AnsibleExecutor``
   (wall time, and CPU of the process and all its children via RUSAGE_CHILDREN);
2. a configuration run with remediation where 2 of N local hosts drifted, vs a check run plus a
   2-host run (remediation must touch only the drifted hosts);
3. throughput of trivial runs per minute with two running at once: our executor vs
   ``ansible_runner.run`` alone (baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.executors.ansible import AnsibleExecutor
from reconciler.executors.spec import Progress, RunRequest, TargetHost

VENV_BIN = os.path.dirname(sys.executable)
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
TRIVIAL = "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: msg=hi\n"
MANAGED = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        content: "port=8080\\n"
        dest: "{{ conf_dir }}/{{ inventory_hostname }}.conf"
"""


def cpu() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def measure(fn: Callable[[], None]) -> tuple[float, float]:
    c0, t0 = cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu() - c0


def overhead(root: Path, repeats: int) -> None:
    project = root / "trivial"
    project.mkdir()
    (project / "site.yml").write_text(TRIVIAL)
    inv = root / "inv.json"
    inv.write_text(json.dumps({"all": {"hosts": {"localhost": LOCAL}}}))
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"], ANSIBLE_NOCOLOR="1")
    executor = AnsibleExecutor()
    request = RunRequest("bench", str(project), "site.yml", hosts=(TargetHost("localhost", LOCAL),))

    def bare() -> None:
        subprocess.run(
            ["ansible-playbook", "-i", str(inv), "site.yml"],
            cwd=project,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def ours() -> None:
        outcome = executor.run(request)
        assert outcome.status == "succeeded", outcome.message

    bare()
    ours()  # warm caches
    b: list[tuple[float, float]] = []
    o: list[tuple[float, float]] = []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        b.append(measure(bare))
        o.append(measure(ours))
    bw, bc = statistics.median(x[0] for x in b), statistics.median(x[1] for x in b)
    ow, oc = statistics.median(x[0] for x in o), statistics.median(x[1] for x in o)
    print(f"1. trivial playbook, {repeats} runs each (median):")
    print(f"   bare ansible-playbook   wall {bw:.3f} s   cpu {bc:.3f} s")
    print(f"   AnsibleExecutor         wall {ow:.3f} s   cpu {oc:.3f} s")
    print(
        f"   overhead                wall {100 * (ow / bw - 1):+.1f}% (goal <= 10%)   "
        f"cpu {100 * (oc / bc - 1):+.1f}% (goal <= 5%)"
    )


def remediation(root: Path, hosts_n: int) -> None:
    project = root / "managed"
    project.mkdir()
    (project / "site.yml").write_text(MANAGED)
    conf = root / "conf"
    conf.mkdir()
    hosts = tuple(TargetHost(f"h{i:02d}", LOCAL) for i in range(hosts_n))
    executor = AnsibleExecutor()
    base = RunRequest(
        "apply", str(project), "site.yml", hosts=hosts, trusted_vars={"conf_dir": str(conf)}
    )
    assert executor.run(base).status == "succeeded"
    drifted = [hosts[3].name, hosts[hosts_n - 2].name]

    def corrupt() -> None:
        for name in drifted:
            (conf / f"{name}.conf").write_text("port=9999\n")

    from dataclasses import replace

    corrupt()
    touched: set[str] = set()

    def seen(p: Progress) -> None:
        if p.phase == "remediate" and p.host:
            touched.add(p.host)

    t0 = time.perf_counter()
    out = executor.run(
        replace(base, run_id="fix", kind="configuration", remediate=True, recheck=False), seen
    )
    fix_wall = time.perf_counter() - t0
    assert out.status == "succeeded", out.message
    assert sorted(n for n, d in out.drift.items() if d == "fixed") == sorted(drifted)
    assert touched == set(drifted), touched

    corrupt()
    t0 = time.perf_counter()
    executor.run(replace(base, run_id="check", kind="configuration"))
    check_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    executor.run(replace(base, run_id="two", hosts=tuple(h for h in hosts if h.name in drifted)))
    two_wall = time.perf_counter() - t0
    print(f"2. remediation, 2 drifted of {hosts_n} local hosts (one run each):")
    print(f"   check + remediate (only the 2 hosts touched)   {fix_wall:.1f} s")
    print(
        f"   check run {check_wall:.1f} s + 2-host run {two_wall:.1f} s = "
        f"{check_wall + two_wall:.1f} s (two {hosts_n}-host runs would be ~{2 * check_wall:.0f} s)"
    )


def throughput(root: Path, seconds: float) -> None:
    project = root / "tp"
    project.mkdir()
    (project / "site.yml").write_text(TRIVIAL)
    executor = AnsibleExecutor()

    def ours(i: int) -> None:
        out = executor.run(
            RunRequest(f"tp{i}", str(project), "site.yml", hosts=(TargetHost("localhost", LOCAL),))
        )
        assert out.status == "succeeded", out.message

    import ansible_runner

    def runner_alone(i: int) -> None:
        pdd = tempfile.mkdtemp(dir=root)
        os.symlink(project, os.path.join(pdd, "project"))
        r = ansible_runner.run(
            private_data_dir=pdd,
            playbook="site.yml",
            inventory={"all": {"hosts": {"localhost": LOCAL}}},
            quiet=True,
            envvars={"PATH": VENV_BIN + os.pathsep + os.environ["PATH"], "ANSIBLE_NOCOLOR": "1"},
            cancel_callback=lambda: False,
        )
        assert r.status == "successful"
        shutil.rmtree(pdd, ignore_errors=True)

    def rate(fn: Callable[[int], None]) -> float:
        count = [0, 0]
        end = time.perf_counter() + seconds

        def loop(slot: int) -> None:
            i = 0
            while time.perf_counter() < end:
                fn(slot * 100000 + i)
                i += 1
                count[slot] += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=loop, args=(s,)) for s in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(count) / (time.perf_counter() - t0) * 60

    ours_rate = rate(ours)
    base_rate = rate(runner_alone)
    print(f"3. throughput, trivial runs, two at once, {seconds:.0f} s each:")
    print(f"   AnsibleExecutor        {ours_rate:.0f} runs/min (goal >= 140)")
    print(f"   ansible_runner.run     {base_rate:.0f} runs/min (baseline)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 10 hosts, 20 s")
    parser.add_argument("--hosts", type=int, default=None, help="hosts for the remediation case")
    args = parser.parse_args()
    repeats = 5 if args.quick else 15
    hosts_n = args.hosts or (10 if args.quick else 50)
    seconds = 20.0 if args.quick else 60.0
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-exec-") as tmp:
        root = Path(tmp)
        overhead(root, repeats)
        remediation(root, hosts_n)
        throughput(root, seconds)


if __name__ == "__main__":
    main()
