"""The JSON Schemas in schemas/ are generated from the models and accept real documents."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from reconciler.loading.yamlparse import Loader
from reconciler.model.schemas import render_all

ROOT = Path(__file__).resolve().parents[1]


def test_committed_schemas_are_exactly_what_the_models_generate() -> None:
    expected = render_all()
    committed = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "schemas").glob("*.json")}
    stale = sorted(n for n in expected if committed.get(n) != expected[n])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, (
        f"schemas/ is stale ({stale or extra}); run: python -m reconciler.model.schemas schemas"
    )


def _example_documents() -> list[tuple[str, dict[str, object]]]:
    out = []
    for path in sorted((ROOT / "example-repo").rglob("*.yaml")):
        # YAML 1.2 resolution, as editors (yaml-language-server) and the loader use it
        for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=Loader):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("reconciler/"):
                out.append((f"{path.relative_to(ROOT)}:{doc['kind']}", doc))
    return out


_DOCS = _example_documents()


@pytest.mark.parametrize(("where", "doc"), _DOCS, ids=[w for w, _ in _DOCS])
def test_every_example_document_is_accepted_by_its_json_schema(
    where: str, doc: dict[str, object]
) -> None:
    schema = json.loads((ROOT / "schemas" / f"{str(doc['kind']).lower()}.json").read_text())
    jsonschema.validate(doc, schema)


def test_the_schema_rejects_an_unknown_field_like_the_loader_does() -> None:
    schema = json.loads((ROOT / "schemas" / "schedule.json").read_text())
    doc = {
        "apiVersion": "reconciler/v1",
        "kind": "Schedule",
        "metadata": {"name": "x"},
        "spec": {"template": "t", "owner": "o", "when": {"daily": {"at": "02:00"}}, "tempalte": 1},
    }
    with pytest.raises(jsonschema.ValidationError, match="tempalte"):
        jsonschema.validate(doc, schema)
