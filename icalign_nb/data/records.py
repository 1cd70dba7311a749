"""Reading records from .jsonl, .json and .parquet files, and pulling typed fields out of them.

Every problem is one `UserError` line naming the file, the line (or item) and the field.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..errors import UserError, first_line, where
from ..files import iter_jsonl, read_json


def read_records(path: Path) -> list[tuple[str, dict]]:
    """Read .jsonl, .json (a list of objects) or .parquet into (location, object) pairs."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a data file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [(where(path, n), obj) for n, obj in iter_jsonl(path)]
    if suffix == ".json":
        items = read_json(path)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise UserError(f"{path}: expected a JSON list of objects")
        return [(f"{path}: item {i + 1}", obj) for i, obj in enumerate(items)]
    if suffix == ".parquet":
        try:
            rows = pl.read_parquet(path).to_dicts()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UserError(f"{path}: not a readable Parquet file ({first_line(exc, 120)})") from None
        return [(f"{path}: row {i + 1}", obj) for i, obj in enumerate(rows)]
    raise UserError(f"{path}: unsupported format '{suffix}' (use .jsonl, .json or .parquet)")


def text_field(
    loc: str, obj: dict, field: str, *, required: bool = True, empty_ok: bool = False
) -> str | None:
    """A string field; missing, non-string or (unless `empty_ok`) blank values are a UserError."""
    if field not in obj or obj[field] is None:
        if not required:
            return None
        found = ", ".join(sorted(obj)) or "none"
        raise UserError(f"{loc}: missing field '{field}' (fields found: {found})")
    value = obj[field]
    if not isinstance(value, str):
        raise UserError(f"{loc}: field '{field}' must be a string, got {type(value).__name__}")
    if required and not empty_ok and not value.strip():
        raise UserError(f"{loc}: field '{field}' is empty")
    return value


def record_ids(records: list[tuple[str, dict]], prefix: str) -> list[str]:
    """Ids from an `id` field where present, else `<prefix>-<index>`; duplicates are an error."""
    ids = []
    seen: dict[str, str] = {}
    for i, (loc, obj) in enumerate(records):
        value = obj.get("id", obj.get("question_id"))
        rid = str(value) if value is not None else f"{prefix}-{i:05d}"
        if rid in seen:
            raise UserError(f"{loc}: field 'id': duplicate id '{rid}' (first at {seen[rid]})")
        seen[rid] = loc
        ids.append(rid)
    return ids


def record_format(obj: dict) -> str:
    """Name the record format from its fields."""
    if "final_return" in obj:
        return "paper-pool"
    if "instruction" in obj and "input" in obj:
        return "alpaca"
    if "instruction" in obj:
        return "alpaca-eval"
    if "turns" in obj:
        return "mt-bench"
    return "generic"


def prompt_response(loc: str, obj: dict, fields: dict[str, str] | None) -> tuple[str, str]:
    """Pull (prompt, response) out of one record in any supported format."""
    if fields:
        prompt_field, response_field = fields.get("prompt", "prompt"), fields.get("response", "response")
        return text_field(loc, obj, prompt_field), text_field(loc, obj, response_field, empty_ok=True)
    kind = record_format(obj)
    if kind == "paper-pool":
        return text_field(loc, obj, "prompt"), text_field(loc, obj, "final_return", empty_ok=True)
    if kind == "alpaca":
        instruction = text_field(loc, obj, "instruction")
        extra = text_field(loc, obj, "input", required=False) or ""
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return prompt, text_field(loc, obj, "output", empty_ok=True)
    if kind == "alpaca-eval":
        return text_field(loc, obj, "instruction"), text_field(loc, obj, "output", empty_ok=True)
    return text_field(loc, obj, "prompt"), text_field(loc, obj, "response", empty_ok=True)


def parse_field_map(text: str | None) -> dict[str, str] | None:
    """Parse `prompt=question,response=answer` into a field mapping."""
    if not text:
        return None
    mapping = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in {"prompt", "response"} or not value.strip():
            raise UserError(f"fields: expected prompt=NAME,response=NAME, got '{text}'")
        mapping[key.strip()] = value.strip()
    return mapping
