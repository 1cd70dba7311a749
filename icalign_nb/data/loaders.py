"""Typed loaders for pools, evaluation sets and baseline answers, by built-in name or file.

Every loader returns a polars DataFrame with a fixed schema:

- pool: ``id, prompt, response, category, source``
- eval set: ``id, prompt, category, reference, baseline`` (the last two may be null)
- baseline answers: ``id, prompt, response``

Alpaca rows with a non-empty ``input`` become ``instruction + "\\n\\n" + input`` (the two
parts separated by a blank line, as Alpaca's own prompt template separates them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from ..errors import UserError
from .fetch import cache_data_dir, data_root, fetch, package_resource
from .records import prompt_response, read_records, record_ids, text_field

POOL_SCHEMA = {
    "id": pl.String,
    "prompt": pl.String,
    "response": pl.String,
    "category": pl.String,
    "source": pl.String,
}
EVAL_SCHEMA = {
    "id": pl.String,
    "prompt": pl.String,
    "category": pl.String,
    "reference": pl.String,
    "baseline": pl.String,
}
ANSWER_SCHEMA = {"id": pl.String, "prompt": pl.String, "response": pl.String}

# Built-in names: name -> (relative path in a data dir, or "package:<file>" for shipped data).
BUILTIN_POOLS = {
    "starter": "package:starter_pool",
    "oasst-gpt-9k": "paper_resources/oasst_gpt_9k.jsonl",
    "alpaca": "alpaca/alpaca_5000.json",
    "alpaca-eval-gpt4": "alpaca_eval/gpt4_0613.json",
    "lima-test-chatgpt": "paper_release/chatgpt_results.jsonl",
    "lima-test-davinci003": "paper_release/davinci003_results.jsonl",
}
BUILTIN_EVALS = {
    "starter": "package:starter_eval.jsonl",
    "lima-test": "paper_release/davinci003_results.jsonl",
    "alpaca-eval": "alpaca_eval/text_davinci_003.json",
    "mt-bench": "urial/mt_bench_questions.jsonl",
}
BUILTIN_BASELINES = {
    "starter": "package:starter_eval.jsonl",
    "davinci003": "paper_release/davinci003_results.jsonl",
    "chatgpt": "paper_release/chatgpt_results.jsonl",
    "alpaca-eval-davinci003": "alpaca_eval/text_davinci_003.json",
    "alpaca-eval-gpt4": "alpaca_eval/gpt4_0613.json",
    "alpaca-eval-llama-2-13b-chat": "alpaca_eval/llama-2-13b-chat-hf.json",
}


BUILTINS = {"pool": BUILTIN_POOLS, "eval set": BUILTIN_EVALS, "baseline": BUILTIN_BASELINES}


def check_source(spec: str | Path, kind: str) -> None:
    """Refuse, before anything is read or fetched, a name that is neither a built-in `kind` ("pool",
    "eval set" or "baseline") nor an existing file or folder."""
    builtins = BUILTINS[kind]
    if str(spec) not in builtins and not Path(str(spec)).expanduser().exists():
        raise UserError(f"{spec}: no such file and not a built-in {kind} (built-ins: {', '.join(builtins)})")


def source_path(spec: str | Path, kind: str, data_dir: str | Path | None = None) -> Path:
    """Where a pool, eval set or baseline (`kind` as in `check_source`) is read from, without reading or
    fetching it."""
    target = BUILTINS[kind].get(str(spec))
    if target is None:
        return Path(str(spec)).expanduser()
    if target.startswith("package:"):
        return package_resource(target.removeprefix("package:"))
    root = data_root(data_dir)
    return (root if root is not None else cache_data_dir()) / target


def _resolve(spec: str | Path, builtins: dict[str, str], kind: str, data_dir: str | Path | None) -> Path:
    """A built-in name or a path -> a local file path."""
    name = str(spec)
    if name in builtins:
        target = builtins[name]
        if target.startswith("package:"):
            return package_resource(target.removeprefix("package:"))
        return fetch(target, data_dir)
    check_source(spec, kind)
    return Path(name).expanduser()


def load_pool(
    spec: str | Path = "starter", data_dir: str | Path | None = None, fields: dict[str, str] | None = None
) -> pl.DataFrame:
    """Load a demonstration pool (built-in name or file) as ``id, prompt, response, category, source``."""
    path = _resolve(spec, BUILTIN_POOLS, "pool", data_dir)
    records = _records_in(path)
    if not records:
        raise UserError(f"{path}: the pool is empty")
    ids = record_ids(records, str(spec) if str(spec) in BUILTIN_POOLS else path.stem)
    rows, dropped = [], []
    for rid, (loc, obj) in zip(ids, records, strict=True):
        prompt, response = prompt_response(loc, obj, fields)
        if not response.strip():
            dropped.append(loc)
            continue
        category = obj.get("category") or obj.get("dataset") or ""
        rows.append(
            {
                "id": rid,
                "prompt": prompt,
                "response": response,
                "category": str(category),
                "source": str(spec) if str(spec) in BUILTIN_POOLS else path.name,
            }
        )
    if dropped:
        print(
            f"note: {len(dropped)} demonstration(s) with an empty response left out of the pool "
            f"(first: {dropped[0]})",
            file=sys.stderr,
        )
    if not rows:
        raise UserError(f"{path}: the pool has no demonstration with a response")
    return pl.DataFrame(rows, schema=POOL_SCHEMA)


def _records_in(path: Path) -> list[tuple[str, dict]]:
    """Records of a file, or of every *.jsonl in a folder (sorted by name)."""
    if path.is_dir():
        return [rec for part in sorted(path.glob("*.jsonl")) for rec in read_records(part)]
    return read_records(path)


def load_eval(
    spec: str | Path = "starter", data_dir: str | Path | None = None, fields: dict[str, str] | None = None
) -> pl.DataFrame:
    """Load an evaluation set as ``id, prompt, category, reference, baseline``."""
    name = str(spec)
    path = _resolve(spec, BUILTIN_EVALS, "eval set", data_dir)
    records = read_records(path)
    if not records:
        raise UserError(f"{path}: the evaluation set is empty")
    prefix = {"lima-test": "lima", "alpaca-eval": "ae", "mt-bench": "mtb"}.get(name, path.stem)
    if name == "lima-test":
        ids = [f"lima-{i:03d}" for i in range(len(records))]
    elif name == "alpaca-eval":
        ids = [f"ae-{i:03d}" for i in range(len(records))]
    else:
        ids = record_ids(records, prefix)
        if name == "mt-bench":
            ids = [f"mtb-{i}" for i in ids]
    rows = []
    for rid, (loc, obj) in zip(ids, records, strict=True):
        if fields:
            prompt = text_field(loc, obj, fields.get("prompt", "prompt"))
        elif "turns" in obj:
            turns = obj["turns"]
            if (
                not isinstance(turns, list)
                or not turns
                or not isinstance(turns[0], str)
                or not turns[0].strip()
            ):
                raise UserError(f"{loc}: field 'turns' must be a non-empty list of strings")
            prompt = turns[0]
        elif "instruction" in obj:
            prompt = text_field(loc, obj, "instruction")
        else:
            prompt = text_field(loc, obj, "prompt")
        category = obj.get("category") or obj.get("dataset") or ""
        rows.append(
            {
                "id": rid,
                "prompt": prompt,
                "category": str(category),
                "reference": _first_turn_reference(loc, obj),
                "baseline": text_field(loc, obj, "baseline", required=False),
            }
        )
    return pl.DataFrame(rows, schema=EVAL_SCHEMA)


def _first_turn_reference(loc: str, obj: dict) -> str | None:
    """The reference answer; MT-Bench keeps one per turn in a list, of which the first counts."""
    value = obj.get("reference")
    if isinstance(value, list):
        value = value[0] if value and isinstance(value[0], str) else None
        return value
    return text_field(loc, obj, "reference", required=False)


def load_baseline(spec: str | Path, data_dir: str | Path | None = None) -> pl.DataFrame:
    """Load baseline answers as ``id, prompt, response`` (matched to queries by prompt text)."""
    name = str(spec)
    path = _resolve(spec, BUILTIN_BASELINES, "baseline", data_dir)
    records = read_records(path)
    if not records:
        raise UserError(f"{path}: no baseline answers")
    rows = []
    for i, (loc, obj) in enumerate(records):
        if "baseline" in obj:  # an eval set that carries its own baseline answers
            prompt, response = text_field(loc, obj, "prompt"), text_field(loc, obj, "baseline")
        else:
            prompt, response = prompt_response(loc, obj, None)
        rid = obj.get("id")
        if rid is None:
            rid = {"davinci003": "lima", "chatgpt": "lima"}.get(
                name, "ae" if "alpaca_eval" in str(path) else path.stem
            )
            rid = f"{rid}-{i:03d}"
        rows.append({"id": str(rid), "prompt": prompt, "response": response})
    return pl.DataFrame(rows, schema=ANSWER_SCHEMA)
