"""``reconciler serve``: the daemon, with its HTTP server, logs and signal handling."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import click

from reconciler.cli.state import state_option


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        area = record.name.removeprefix("reconciler.")
        text = f"{at} {record.levelname:<7} {area}: {record.getMessage()}"
        if record.exc_info:  # a bug: keep the traceback in the log, not on the user's screen
            text += "\n" + self.formatException(record.exc_info)
        return text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        data: dict[str, Any] = {
            "at": at,
            "level": record.levelname.lower(),
            "area": record.name.removeprefix("reconciler."),
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(fmt: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger("reconciler")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # uvicorn's own loggers: errors only, through our formatter (its access log is off)
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(logging.WARNING)
        lg.propagate = False


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(
            f"{text!r}: write HOST:PORT, e.g. 127.0.0.1:8080", param_hint="--listen"
        )
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def _duration(value: str, option: str) -> timedelta:
    from reconciler.model.common import parse_duration

    try:
        d = parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(f"{value!r}: {e}", param_hint=option) from None
    if d <= timedelta(0):
        raise click.BadParameter(f"{value!r}: must be more than 0", param_hint=option)
    return d


@click.command()
@click.argument("repo", default=".")
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Where the HTTP API listens (port 0: any free port).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Runs executed at once by this replica [default: the number of cores; 0: "
    "fire and serve, run nothing].",
)
@click.option(
    "--poll",
    default="60s",
    show_default=True,
    metavar="DURATION",
    help="How often to fetch a Git URL (a local repository is also watched).",
)
@click.option(
    "--grace",
    default="30s",
    show_default=True,
    metavar="DURATION",
    help="On SIGTERM, how long running runs may take before they are cancelled.",
)
@click.option(
    "--log-format",
    "log_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text or JSON, one per event, on stderr.",
)
@state_option
def serve(
    repo: str,
    listen: str,
    workers: int | None,
    poll: str,
    grace: str,
    log_format: str,
    state: str | None,
) -> None:
    """Run the daemon: watch REPO, reconcile, fire every slot, run the jobs, serve the API.

    A local repository's refs are watched (a new commit is applied within about a second); a
    Git URL is fetched every --poll. SIGTERM or Ctrl-C stops firing and claiming, lets running
    runs finish within --grace, cancels the rest and exits 0.
    """
    import uvicorn

    from reconciler.api.app import create_app
    from reconciler.api.context import ApiContext, Health
    from reconciler.api.metrics import PrometheusTelemetry
    from reconciler.clock import SystemClock
    from reconciler.engine.daemon import Daemon, DaemonConfig
    from reconciler.engine.planning import open_state, state_url
    from reconciler.stores.base import redact
    from reconciler.stores.opening import open_store

    setup_logging(log_format)
    log = logging.getLogger("reconciler.serve")
    host, port = parse_listen(listen)
    poll_d, grace_d = _duration(poll, "--poll"), _duration(grace, "--grace")
    n_workers = os.cpu_count() or 1 if workers is None else workers
    url = state_url(state)
    open_state(state).close()  # create or upgrade the state once, with a clear error
    executor = _executor(n_workers)
    clock = SystemClock()

    def opener() -> Any:
        return open_store(url)

    # test entry points: a short lease, and how late a slot may be found before it counts
    # as missed (so a test can show a misfire after a few seconds of outage)
    lease = float(os.environ.get("RECONCILER_TEST_LEASE_SECONDS", "60"))
    late = timedelta(seconds=float(os.environ.get("RECONCILER_TEST_LATE_SECONDS", "60")))
    telemetry = PrometheusTelemetry()  # one per replica: the loops feed it, /metrics shows it
    daemon = Daemon(
        DaemonConfig(
            repo,
            opener,
            clock,
            executor,
            n_workers,
            poll=poll_d,
            grace=grace_d,
            lease_seconds=lease,
            late_after=late,
            notify_claim_seconds=float(
                os.environ.get("RECONCILER_TEST_NOTIFY_CLAIM_SECONDS", "30")
            ),
            notify_backoff_first=float(os.environ.get("RECONCILER_TEST_NOTIFY_BACKOFF", "2")),
            telemetry=telemetry,
        )
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every answer written in two parts waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: a response written in two parts (head, body) must
    # not wait for the client's delayed ACK (40 ms). asyncio sets it only on sockets made
    # with proto=IPPROTO_TCP, and this one is made with proto 0.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    bound = sock.getsockname()[1]
    app = create_app(
        ApiContext(
            opener,
            clock,
            Health(daemon.firing_behind, late.total_seconds()),
            repo=redact(repo),
            replica_id=daemon.config.replica_id,
            request_reconcile=daemon.request_reconcile,
            wake_workers=daemon.workers.poke,
            telemetry=telemetry,
            process_deliveries=daemon.webhooks.poke,
        )
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
        )
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            return
        log.info("received %s: draining", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    http = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="http", daemon=True)
    http.start()
    daemon.start()
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "listening on http://%s:%d (repo %s, state %s, %d worker(s), replica %s)",
        shown,
        bound,
        repo,
        redact(url),
        n_workers,
        daemon.config.replica_id,
    )
    click.echo(f"reconciler serve: listening on http://{shown}:{bound}", err=True)
    try:
        while not stop.wait(0.5):
            pass
        daemon.shutdown()
    finally:
        server.should_exit = True
        http.join(10)
        close = getattr(executor, "close", None)
        if close is not None:
            close()
        sock.close()
    log.info("stopped")


def _executor(workers: int) -> Any:
    """The Ansible executor (a warm zygote when there are workers), or the fake one when the
    test entry point asks for it (``RECONCILER_TEST_FAKE_EXECUTOR``: seconds per run;
    ``RECONCILER_TEST_FAKE_LOG``: that many log lines, written evenly over those seconds)."""
    fake = os.environ.get("RECONCILER_TEST_FAKE_EXECUTOR")
    if fake is not None:
        from reconciler.executors.fake import FakeExecutor, Script
        from reconciler.executors.spec import RunOutcome

        lines = int(os.environ.get("RECONCILER_TEST_FAKE_LOG") or 0)
        return FakeExecutor(
            default=Script(
                RunOutcome("", "succeeded", "ok (fake executor)"),
                log=[f"TASK [step {i + 1} of {lines}] ok\n" for i in range(lines)],
                delay=float(fake),
                log_every=float(fake) / (lines + 1) if lines else 0.0,
            )
        )
    from reconciler.executors.ansible import AnsibleExecutor

    # a long-lived process: workers are forked from a warm zygote
    return AnsibleExecutor(prefork=workers > 0)
