"""Reading verdicts into one table: run directories, judgments files, the release's `*_autoeval.jsonl`.

Every source becomes rows of ``system, baseline, judge, query_id, sample, order, score_system,
score_baseline, verdict``. Release files name their system and baseline in the file name
(`<system>_vs_<baseline>_autoeval.jsonl`) and were judged by GPT-4-0613 with the paper prompt,
the system as Assistant 1.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..data.release import load_release_judgments, release_names
from ..errors import UserError, where
from ..files import iter_jsonl
from .parse import VERDICTS, parse_scores, verdict

RELEASE_JUDGE = "gpt-4-0613/paper (paper release)"

SCHEMA = {
    "system": pl.String,
    "baseline": pl.String,
    "judge": pl.String,
    "query_id": pl.String,
    "sample": pl.Int64,
    "order": pl.String,
    "score_system": pl.Float64,
    "score_baseline": pl.Float64,
    "verdict": pl.String,
}
REPLY_SCHEMA = {
    "query_id": pl.String,
    "sample": pl.Int64,
    "order": pl.String,
    "judge": pl.String,
    "raw": pl.String,
}
_REQUIRED = ("query_id", "sample", "order", "score_system", "score_baseline", "verdict")


def load_release_verdicts(path: str | Path) -> pl.DataFrame:
    """Verdicts of a release `*_autoeval.jsonl` (first line "s1 s2", system = Assistant 1)."""
    path = Path(path)
    system, baseline = release_names(path)
    raw = load_release_judgments(path)
    rows = []
    for qid, sample, text in raw.iter_rows():
        scores = parse_scores(text)
        s1, s2 = scores if scores else (None, None)
        rows.append(
            {
                "system": system,
                "baseline": baseline,
                "judge": RELEASE_JUDGE,
                "query_id": qid,
                "sample": sample,
                "order": "system_first",
                "score_system": s1,
                "score_baseline": s2,
                "verdict": verdict(s1, s2),
            }
        )
    return pl.DataFrame(rows, schema=SCHEMA)


def load_judgments_file(path: str | Path, system: str | None = None) -> pl.DataFrame:
    """Verdicts of a `judgments.jsonl` written by `icalign judge` (system = its folder's name)."""
    path = Path(path)
    system = system or path.parent.name
    rows, seen = [], set()
    for lineno, obj in iter_jsonl(path):
        for name in _REQUIRED:
            if name not in obj:
                raise UserError(f"{where(path, lineno, name)} is missing")
        if obj["verdict"] not in VERDICTS:
            raise UserError(f"{where(path, lineno, 'verdict')} must be one of {', '.join(VERDICTS)}")
        for name in ("score_system", "score_baseline"):
            if obj[name] is not None and not isinstance(obj[name], int | float):
                raise UserError(f"{where(path, lineno, name)} must be a number or null")
        if not isinstance(obj["sample"], int):
            raise UserError(f"{where(path, lineno, 'sample')} must be an integer")
        item = (obj["query_id"], obj["sample"], obj["order"])
        if item in seen:  # a repeated item counts once
            continue
        seen.add(item)
        rows.append(
            {
                "system": system,
                "baseline": str(obj.get("baseline") or "baseline"),
                "judge": str(obj.get("judge") or "unknown judge"),
                **{k: obj[k] for k in _REQUIRED},
            }
        )
    if not rows:
        raise UserError(f"{path}: no judgments")
    return pl.DataFrame(rows, schema=SCHEMA)


def load_replies(path: str | Path) -> pl.DataFrame:
    """The judge's raw replies of a `judgments.jsonl` (``query_id, sample, order, judge, raw``; the first
    line of a repeated item, as verdicts are read)."""
    rows, seen = [], set()
    for _, obj in iter_jsonl(Path(path)):
        item = (obj.get("query_id"), obj.get("sample"), obj.get("order"))
        if item in seen:
            continue
        seen.add(item)
        rows.append({k: obj.get(k) for k in REPLY_SCHEMA})
    return pl.DataFrame(rows, schema=REPLY_SCHEMA)


def load_verdicts(source: str | Path) -> pl.DataFrame:
    """Verdicts of a run directory, a judgments file or a release `*_autoeval.jsonl`."""
    path = Path(source)
    if path.is_dir():
        target = path / "judgments.jsonl"
        if not target.exists():
            raise UserError(f"{path}: no judgments.jsonl (run `icalign judge --run {path}` first)")
        return load_judgments_file(target, path.name)
    if not path.exists():
        raise UserError(f"{path}: not found")
    if path.name.endswith("_autoeval.jsonl"):
        return load_release_verdicts(path)
    return load_judgments_file(path)
