"""JSON Schemas of the document kinds, generated from the models.

``python -m reconciler.model.schemas [DIR]`` (or ``make schemas``) writes one file per kind
into ``schemas/``; a test fails when the committed files are stale. Editors pick a schema up
from a first line such as ``# yaml-language-server: $schema=../schemas/schedule.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from reconciler.model.common import API_VERSION
from reconciler.model.documents import KINDS

SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"


def schema_for(kind: str) -> dict[str, Any]:
    model = KINDS[kind]
    schema = model.model_json_schema(by_alias=True, mode="validation")
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"const": API_VERSION}
    props["kind"] = {"const": kind}
    if kind != "Settings":
        props["metadata"] = {"$ref": "#/$defs/Metadata", "required": ["name"]}
        schema["required"] = sorted({*schema.get("required", []), "metadata"})
    return {
        "$schema": SCHEMA_URL,
        "$id": f"https://reconciler.dev/schemas/v1/{kind.lower()}.json",
        "title": f"reconciler {kind}",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def render_all() -> dict[str, str]:
    """file name -> JSON text, for every kind."""
    return {
        f"{kind.lower()}.json": json.dumps(schema_for(kind), indent=2, sort_keys=True) + "\n"
        for kind in KINDS
    }


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "schemas")
    target.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (target / name).write_text(text, encoding="utf-8")
        print(f"wrote {target / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
