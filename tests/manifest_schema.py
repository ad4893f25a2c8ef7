"""docs/manifest.schema.json applied to manifests: what the tests use to hold every bundle they write
to the published format (the runtime itself never needs jsonschema)."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "manifest.schema.json"


@cache
def validator():
    from jsonschema import Draft202012Validator
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(raw: bytes) -> list[str]:
    """Why manifest bytes fail the schema (JSON that is not JSON, NaN included, fails too); [] when they pass."""
    def reject(name: str):
        raise ValueError(f"{name} is not JSON")
    try:
        doc = json.loads(raw, parse_constant=reject)
    except (ValueError, RecursionError) as e:
        return [f"not JSON: {str(e)[:200]}"]
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}" for e in validator().iter_errors(doc)]


def check_manifest(bundle: Path) -> None:
    """AssertionError naming each violation when bundle/manifest.json does not follow the schema."""
    errors = schema_errors((Path(bundle) / "manifest.json").read_bytes())
    assert not errors, f"{bundle}/manifest.json does not follow docs/manifest.schema.json:\n" + "\n".join(errors)
