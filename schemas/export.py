"""JSON Schema files generated from the contract's models, for vendors in any language."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.alerts import Alert
from schemas.events import MODEL_FOR_TYPE

JSON_DIR = Path(__file__).parent / "json"
ALERT_SCHEMA = "alert.v1.json"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name to JSON Schema: one per event type of contract v1, and the alert that
    consumers of ``sharing.alerts`` read."""
    out = {}
    for event_type, model in MODEL_FOR_TYPE.items():
        schema = model.model_json_schema(mode="validation")
        out[f"{event_type}.json"] = {"$schema": _DIALECT, **schema}
    out[ALERT_SCHEMA] = {"$schema": _DIALECT, **Alert.model_json_schema(mode="serialization")}
    return out


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema file into ``directory`` (created if missing); returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_text(schema_text(schema), encoding="utf-8")
        written.append(path)
    return written
