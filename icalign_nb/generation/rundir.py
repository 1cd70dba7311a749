"""A run directory's files and their one reader each.

- ``config.json``: what was asked (model, backend, retrieval and generation settings), the content
  hashes of the inputs, the query ids; written once, when the prompts are known to fit;
- ``retrievals.jsonl``: the retrieval that built each prompt (one line per query, or per (query,
  sample) for a preset that draws per sample), written before any answer; every later stage and
  notebook reads the demos from here, never from a new retrieval;
- ``generations.jsonl``: one line per finished (query, sample), appended batch by batch.

The one rule for outputs: a command never writes over one of its own inputs, nor into the cache, nor
into a run directory other than the files that command owns there (`generate` its run's, `judge` its
run's judgments).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

from ..cache import cache_root
from ..errors import UserError, where
from ..files import check_writable, iter_jsonl, output_target, read_json, write_jsonl
from ..retrieval.retriever import Retrieval

CONFIG = "config.json"
RETRIEVALS = "retrievals.jsonl"
GENERATIONS = "generations.jsonl"
RECORD_FIELDS = (
    "query_id",
    "sample",
    "query",
    "preset",
    "demo_ids",
    "response",
    "n_prompt_tokens",
    "n_generated_tokens",
    "stopped_by",
    "seconds",
)
GENERATION_SCHEMA = {
    "query_id": pl.String,
    "sample": pl.Int64,
    "query": pl.String,
    "preset": pl.String,
    "demo_ids": pl.List(pl.String),
    "response": pl.String,
    "n_prompt_tokens": pl.Int64,
    "n_generated_tokens": pl.Int64,
    "stopped_by": pl.String,
    "seconds": pl.Float64,
}
_REQUIRED = {"query_id": str, "sample": int, "query": str, "response": str}  # what later stages read


def is_run_dir(folder: Path) -> bool:
    """Whether a folder holds a run (its config, or answers to judge)."""
    return (folder / CONFIG).is_file() or (folder / GENERATIONS).is_file()


def check_output(
    out: str | Path, inputs: Iterable[str | Path | None] = (), owns: Iterable[str | Path] = ()
) -> Path:
    """Refuse, before any work, an output that is one of the command's `inputs` (or lies in an input
    folder), that lies in the cache, or that lies in a run directory without being one of the files the
    command `owns`; then the checks of `check_writable`. Returns the path the write lands on."""
    target = output_target(out)
    for given in inputs:
        if given is None or not Path(given).expanduser().exists():
            continue
        source = output_target(given)
        if target == source or (source.is_dir() and target.parent == source):
            raise UserError(f"{out}: is an input of this command ({given}); name another file to write")
    cache = output_target(cache_root())
    if target == cache or cache in target.parents:
        raise UserError(f"{out}: is inside the cache {cache}, which only the package writes; write elsewhere")
    if is_run_dir(target.parent) and target not in {output_target(o) for o in owns}:
        raise UserError(
            f"{out}: is inside the run directory {target.parent}, whose files only its own commands write; "
            "name a file outside it"
        )
    return check_writable(out)


def read_config(run_dir: str | Path) -> dict:
    """A run's recorded config.json (one clear line when the folder is not a run)."""
    path = Path(run_dir).expanduser() / CONFIG
    if not path.is_file():
        raise UserError(f"{path.parent} is not a run directory ({CONFIG} missing)")
    config = read_json(path)
    if not isinstance(config, dict) or not isinstance(config.get("identity"), dict):
        raise UserError(f"{path}: not a generation run config (no 'identity')")
    return config


def read_generations(run_dir: str | Path) -> list[dict]:
    """The run's answers, one checked row per (query, sample); a repeated item keeps its first line."""
    path = Path(run_dir).expanduser() / GENERATIONS
    if not path.exists():
        raise UserError(f"{path}: not found (run `icalign generate --run {run_dir}` first)")
    rows, seen = [], set()
    for lineno, obj in iter_jsonl(path, finished_only=True):
        for name, kind in _REQUIRED.items():
            value = obj.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise UserError(f"{where(path, lineno, name)} must be a {kind.__name__}")
        key = (obj["query_id"], obj["sample"])
        if key not in seen:
            seen.add(key)
            rows.append({**obj, "_loc": where(path, lineno)})
    if not rows:
        raise UserError(f"{path}: no generations")
    return rows


def generations_frame(run_dir: str | Path) -> pl.DataFrame:
    """The run's answers as a table, one row per (query, sample)."""
    rows = read_generations(run_dir)
    return pl.DataFrame([{k: r.get(k) for k in RECORD_FIELDS} for r in rows], schema=GENERATION_SCHEMA)


def check_complete(run_dir: str | Path, done: int, what: str) -> None:
    """Refuse to `what` (judge, export, report on) a run that has not answered every (query, sample) its
    config asks for: a number from part of a run is not the run's."""
    try:
        config = read_config(run_dir)
    except UserError:
        config = None
    if not isinstance(config, dict) or not isinstance(config.get("identity"), dict):
        return  # answers from elsewhere: nothing says how many the run asks for
    samples = config["identity"].get("generation", {}).get("samples")
    if not isinstance(config.get("query_ids"), list) or not isinstance(samples, int):
        return  # a config that does not say what the run asks for (not written by `generate`)
    expected = len(config["query_ids"]) * samples
    if done < expected:
        raise UserError(
            f"run {run_dir} is incomplete ({done} of {expected} items); re-run `icalign generate` to finish "
            f"it before you {what} it"
        )


def done_keys(run_dir: Path) -> set[tuple[str, int]]:
    """The finished (query_id, sample) items (none when nothing is written yet)."""
    if not (run_dir / GENERATIONS).exists():
        return set()
    return {(r["query_id"], r["sample"]) for r in read_generations(run_dir)}


def write_retrievals(run_dir: Path, retrievals: dict[int | None, list[Retrieval]]) -> None:
    """Record the retrievals that build the prompts: per query, or per (query, sample) (key None: all)."""
    write_jsonl(
        run_dir / RETRIEVALS,
        [{**r.to_json(), "sample": sample} for sample, rows in retrievals.items() for r in rows],
    )


def read_retrievals(run_dir: str | Path) -> dict[tuple[str, int | None], Retrieval]:
    """The recorded retrievals by (query_id, sample); sample None when one retrieval serves every sample."""
    path = Path(run_dir).expanduser() / RETRIEVALS
    if not path.exists():
        raise UserError(f"{path}: not found (a run records its retrievals when it starts)")
    out = {}
    for lineno, obj in iter_jsonl(path, finished_only=True):
        try:
            retrieval = Retrieval.from_json(obj)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{where(path, lineno)}: not a retrieval record ({exc})") from None
        out[(retrieval.query_id, obj.get("sample"))] = retrieval
    return out


def retrieval_for(
    retrievals: dict[tuple[str, int | None], Retrieval], query_id: str, sample: int
) -> Retrieval | None:
    """The retrieval that built one item's prompt."""
    return retrievals.get((query_id, sample)) or retrievals.get((query_id, None))
