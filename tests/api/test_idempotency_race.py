"""Concurrent identical triggers with one ``Idempotency-Key`` create one run, on both state
backends: the run and the key are written in one transaction (``create_run_once``)."""

from __future__ import annotations

import threading
from pathlib import Path

from reconciler.stores import open_store

from .conftest import Reply, start_api


def test_concurrent_requests_with_one_idempotency_key_create_one_run(
    state_url: str, tmp_path: Path
) -> None:
    api = start_api(tmp_path, state_url, "--workers", "0")
    try:
        launches, threads_each = 6, 4
        answers: dict[int, list[Reply]] = {i: [] for i in range(launches)}
        barrier = threading.Barrier(threads_each)

        def post(i: int) -> None:
            barrier.wait(10)
            answers[i].append(
                api.trigger(
                    f"template=deploy&version=v{i}", headers={"Idempotency-Key": f"launch-{i}"}
                )
            )

        for i in range(launches):
            threads = [threading.Thread(target=post, args=(i,)) for _ in range(threads_each)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        with open_store(state_url) as store:
            runs = store.list_runs(template="deploy", limit=1000)
        for i, got in answers.items():
            assert [a.status for a in got] == [202] * threads_each, [a.body for a in got]
            ids = {a.body["run"]["id"] for a in got}
            assert len(ids) == 1, (i, ids)
            mine = [r for r in runs if r.variables.get("version") == f"v{i}"]
            assert [r.id for r in mine] == list(ids) and mine[0].status == "queued"
    finally:
        api.serve.stop()
