"""Schemathesis against the live ``/openapi.json`` of a real ``serve``: requests generated from
the schema (valid and invalid ones), each sent with a read, a trigger or an approve key, must get
no server error (5xx) and answers that match the documented status codes and models."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from .conftest import Api

EXAMPLES = 15
KEYS = ("read", "ci", "approver")
"""Each request is sent with one of these keys: a read, a trigger and an approve key."""


def test_generated_requests_get_no_server_error_and_match_the_schema(api: Api) -> None:
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/api/jobs/trigger", "/api/runs", "/api/runs/{run_id}/log", "/api/schedules"} <= paths
    failures: list[str] = []
    for op in operations:
        _fuzz(api, op, GenerationMode.POSITIVE, failures)
        try:
            _fuzz(api, op, GenerationMode.NEGATIVE, failures)
        except Unsatisfiable:
            # no invalid request exists: no parameters, or only free-form string path
            # parameters (any name is a valid name to look up)
            free = all(
                p.definition.get("schema", {}).get("type") == "string"
                and set(p.definition["schema"]) <= {"type", "title"}
                for p in op.path_parameters
            )
            assert not op.query and not op.body and free, op.path
    assert not failures, failures[:5]


def _fuzz(api: Api, op: Any, mode: GenerationMode, failures: list[str]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode), key=st.sampled_from(KEYS))
    def check(case: Any, key: str) -> None:
        response = case.call(base_url=api.url, headers={"X-API-Key": api.keys[key]})
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path}: {response.text}")
        if mode is GenerationMode.POSITIVE:
            case.validate_response(response)

    check()
