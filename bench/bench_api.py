"""HTTP API benchmark (issue 10): trigger throughput and latency of ``POST /api/jobs/trigger``
against a bare FastAPI endpoint on the same uvicorn set-up, measured in the same run.

    python bench/bench_api.py [--duration SECONDS] [--rounds N] [--clients N] [--rate R]

Both servers run as their own processes on 127.0.0.1:

* the floor: a bare FastAPI app with one synchronous ``POST`` endpoint that answers 202 with a
  small JSON object, on uvicorn configured exactly as ``serve`` configures it (no access log,
  no lifespan, the same log level), so the difference is our middlewares, the key check, the
  template and variable checks and the run written to the state;
* ``reconciler serve --workers 0`` on a SQLite state (nothing claims the runs, so every 202
  must still be a queued run at the end), with a trigger key, on a Git repository with one
  template that declares four typed prompts; each request gives three of them as query
  parameters (converted from text as ``--var`` is).

Sections, as printed:

1. **throughput**: ``--clients`` threads with one keep-alive connection each post as fast as
   they can for ``--burst`` seconds; requests per second, median of ``--rounds`` rounds, for
   the floor and the trigger (goal: >= 500 triggers/s);
2. **latency at a fixed rate**: ``--rate`` requests per second (default 200) for
   ``--duration`` seconds (default 60), open loop: each request has its scheduled instant and
   its latency is counted from that instant, so a stall is not hidden by the client waiting
   (coordinated omission); p50, p99 and max for the floor and the trigger (goal: p99 <= 50 ms);

then the check: no error answer, and the state holds exactly one queued ``api`` run per 202.
A webhook section (verification and recording of a forge delivery) fits as another entry of
``SECTIONS`` with its own floor; it is not measured here.

The client runs on the same machine and shares its cores with the server: on a 2-core machine
the figures are a floor of what a remote client would see.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.engine.keys import create_key  # noqa: E402
from reconciler.stores import open_store  # noqa: E402

TRIGGER_PATH = "/api/jobs/trigger?template=deploy&version=1.2.3&replicas=3&canary=true"
FLOOR_PATH = "/bare"

DOCS = {
    "reconciler.yaml": """
        apiVersion: reconciler/v1
        kind: Settings
        spec: {timezone: UTC}
        """,
    "policy.yaml": """
        apiVersion: reconciler/v1
        kind: Policy
        metadata: {name: ops}
        spec:
          users: [{name: alice, email: alice@example.com, groups: [sre]}]
          permissions: [{group: sre, run: ["*"], approve: ["*"]}]
        """,
    "templates.yaml": """
        apiVersion: reconciler/v1
        kind: JobTemplate
        metadata: {name: deploy}
        spec:
          type: orchestration
          playbook: playbooks/deploy.yml
          variables:
            - {name: version, type: string, required: true}
            - {name: replicas, type: integer, default: 1}
            - {name: canary, type: boolean, default: false}
            - {name: mode, type: choice, choices: [fast, safe], default: safe}
        """,
    "playbooks/deploy.yml": """
        - hosts: all
          gather_facts: false
          tasks: [{debug: {msg: "{{ version }}"}}]
        """,
}


# --------------------------------------------------------------------------------------------
# the floor: a bare FastAPI endpoint on the same uvicorn configuration as serve


def floor_server(port_file: str) -> None:
    """Serve the bare endpoint on a free loopback port; write the port to ``port_file``."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post(FLOOR_PATH, status_code=202)
    def bare() -> JSONResponse:
        return JSONResponse({"run": {"id": 1, "status": "queued", "url": "/x"}}, status_code=202)

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as serve does
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    uvicorn.Server(config).run(sockets=[sock])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_floor(tmp: Path) -> Server:
    port_file = tmp / "floor.port"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--floor-server", str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (port_file.exists() and port_file.read_text()):
        time.sleep(0.05)
    if not port_file.exists():
        proc.kill()
        raise SystemExit("the floor server did not start")
    return Server(proc, f"http://127.0.0.1:{port_file.read_text()}", FLOOR_PATH)


def start_serve(tmp: Path) -> tuple[Server, str]:
    """``reconciler serve --workers 0`` on a new Git repository and SQLite state; a trigger key."""
    repo = tmp / "repo"
    for rel, text in DOCS.items():
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(dedent(text).lstrip())
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args],
            cwd=repo,
            check=True,
        )
    state = str(tmp / "state.sqlite")
    py = [sys.executable, "-m", "reconciler"]
    subprocess.run(
        [*py, "apply", str(repo), "--yes", "--state", state], check=True, stdout=subprocess.DEVNULL
    )
    with open_store(state) as store:
        _, secret = create_key(store, "bench", ["trigger"], ["deploy"], None, datetime.now(UTC))
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            *py,
            "serve",
            str(repo),
            "--workers",
            "0",
            "--poll",
            "1h",
            "--state",
            state,
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    url = ""
    while time.monotonic() < deadline and not url:
        for line in (tmp / "serve.log").read_text().splitlines():
            if "listening on http://127.0.0.1:" in line:
                url = "http://" + line.split("http://")[1].split()[0]
        if proc.poll() is not None:
            raise SystemExit("serve exited:\n" + (tmp / "serve.log").read_text())
        time.sleep(0.05)
    if not url:
        proc.kill()
        raise SystemExit("serve did not start")
    return Server(proc, url, TRIGGER_PATH, {"X-API-Key": secret}), state


# --------------------------------------------------------------------------------------------
# the client


class Client:
    """One keep-alive connection; :meth:`post` returns the status (0: a transport error)."""

    def __init__(self, server: Server) -> None:
        u = urlparse(server.url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.server = server
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        conn.connect()
        # the request goes out in more than one segment: without this, Nagle's algorithm
        # holds the last one until the server's delayed ACK (40 ms per request)
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def post(self) -> int:
        try:
            self.conn.request("POST", self.server.path, body=b"", headers=self.server.headers)
            r = self.conn.getresponse()
            r.read()
            if r.getheader("connection", "").lower() == "close":
                self.conn.close()
                self.conn = self._connect()
            return r.status
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = self._connect()
            return 0


@dataclass
class Tally:
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != 202)


def throughput(server: Server, clients: int, seconds: float, tally: Tally) -> float:
    """Requests per second with ``clients`` closed-loop clients for ``seconds``."""
    stop = time.monotonic() + seconds
    counts = [0] * clients

    def loop(i: int) -> None:
        c = Client(server)
        while time.monotonic() < stop:
            tally.add(c.post())
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def fixed_rate(server: Server, rate: float, seconds: float, tally: Tally) -> list[float]:
    """Latencies (ms) of ``rate`` requests per second for ``seconds``, open loop: request k is
    due at ``start + k / rate`` and its latency runs from that instant."""
    total = int(rate * seconds)
    start = time.monotonic() + 0.2
    latencies: list[float] = []
    lock = threading.Lock()
    next_k = [0]

    def loop() -> None:
        c = Client(server)
        while True:
            with lock:
                k = next_k[0]
                next_k[0] += 1
            if k >= total:
                return
            due = start + k / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            status = c.post()
            took = (time.monotonic() - due) * 1000
            tally.add(status)
            with lock:
                latencies.append(took)

    # enough workers that a slow answer never delays the next scheduled send
    threads = [threading.Thread(target=loop) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-api-", dir=args.tmp) as d:
        tmp = Path(d)
        floor = start_floor(tmp)
        serve, state = start_serve(tmp)
        tallies = {"floor": Tally(), "trigger": Tally()}
        try:
            for server, tally in ((floor, tallies["floor"]), (serve, tallies["trigger"])):
                throughput(server, args.clients, 1.0, tally)  # warm up: connections, imports
            rates: dict[str, list[float]] = {"floor": [], "trigger": []}
            for _ in range(args.rounds):  # interleaved, so both see the same machine
                rates["floor"].append(throughput(floor, args.clients, args.burst, tallies["floor"]))
                rates["trigger"].append(
                    throughput(serve, args.clients, args.burst, tallies["trigger"])
                )
            lat = {
                "floor": fixed_rate(floor, args.rate, args.duration, tallies["floor"]),
                "trigger": fixed_rate(serve, args.rate, args.duration, tallies["trigger"]),
            }
        finally:
            serve.stop()
            floor.stop()
        with open_store(state) as store:
            queued = store.queue_counts()["queued"]
            api_runs = len(store.page_runs(trigger="api", status="queued", limit=10**7))
        cores = os.cpu_count()
        print(f"HTTP API on loopback ({cores} cores; client and server share them)")
        print(
            f"1. throughput, {args.clients} keep-alive clients, {args.burst:g} s x "
            f"{args.rounds} rounds (median):"
        )
        f_rate = statistics.median(rates["floor"])
        t_rate = statistics.median(rates["trigger"])
        print(f"   bare FastAPI endpoint (floor)  {f_rate:8.0f} req/s")
        print(
            f"   POST /api/jobs/trigger          {t_rate:8.0f} req/s   "
            f"({t_rate / f_rate:.2f} x the floor; goal >= 500/s)"
        )
        print(f"2. latency at {args.rate:g} req/s for {args.duration:g} s (open loop):")
        for name, label in (
            ("floor", "bare FastAPI endpoint (floor)"),
            ("trigger", "POST /api/jobs/trigger       "),
        ):
            v = lat[name]
            print(
                f"   {label}  p50 {pct(v, 50):6.2f} ms  p99 {pct(v, 99):6.2f} ms  "
                f"max {max(v):7.2f} ms  ({len(v)} requests)"
            )
        f99, t99 = pct(lat["floor"], 99), pct(lat["trigger"], 99)
        print(f"   trigger p99 is {t99 / f99:.1f} x the floor's (goal: p99 <= 50 ms)")
        trig = tallies["trigger"]
        print(
            f"3. check: trigger answers {dict(sorted(trig.statuses.items()))}, "
            f"floor answers {dict(sorted(tallies['floor'].statuses.items()))}"
        )
        print(
            f"   queued api runs in the state: {api_runs} (queue {queued}); "
            f"202 answers: {trig.accepted}"
        )
        ok = trig.errors == 0 and tallies["floor"].errors == 0 and api_runs == trig.accepted
        print("   OK: no error, every 202 is a queued run" if ok else "   FAILED")
        return 0 if ok else 1


SECTIONS: dict[str, Callable[[argparse.Namespace], int]] = {"trigger": run}
"""Sections by name; a webhook section (its own floor: an HMAC check alone) would go here."""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds at the fixed rate")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second, latency")
    p.add_argument("--burst", type=float, default=5.0, help="seconds per throughput round")
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds (median)")
    p.add_argument("--clients", type=int, default=8, help="concurrent throughput clients")
    p.add_argument("--tmp", default=None, help="directory for the state and the repository")
    p.add_argument("--floor-server", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.floor_server:
        floor_server(args.floor_server)
        return 0
    code = 0
    for section in SECTIONS.values():
        code |= section(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
