"""Reading verdicts into one table: run directories, judgments files, the release's `*_autoeval.jsonl`.

Every source becomes rows of ``system, baseline, judge, query_id, sample, order, score_system,
score_baseline, verdict``. Release files name their system and baseline in the file name
(`<system>_vs_<baseline>_autoeval.jsonl`) and were judged by GPT-4-0613 with the paper prompt,
the system as Assistant 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..data.release import load_release_judgments, release_names
from ..errors import UserError, where
from ..files import iter_jsonl, sha256_text
from ..generation.rundir import GENERATIONS, check_complete, generations_frame
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
    "baseline_sha256": pl.String,  # content hash of the baseline's answers (None: not recorded)
    "answer_sha256": pl.String,  # short content hash of the answer judged (None: not recorded)
}
REPLY_SCHEMA = {
    "query_id": pl.String,
    "sample": pl.Int64,
    "order": pl.String,
    "judge": pl.String,
    "raw": pl.String,
}
JUDGMENTS = "judgments.jsonl"
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


def answer_digest(text: str) -> str:
    """The short content hash a verdict keeps of the answer it judged."""
    return sha256_text(text)[:16]


def _judgment_rows(path: Path, system: str) -> list[dict]:
    """The checked rows of a judgments file (a repeated item counts once), with the answer hash if kept."""
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
                "baseline_sha256": obj.get("baseline_sha256"),
                "answer_sha256": obj.get("answer_sha256"),
            }
        )
    if not rows:
        raise UserError(f"{path}: no judgments")
    judgings = {(r["baseline"], r["baseline_sha256"], r["judge"]) for r in rows}
    if len(judgings) > 1:
        raise UserError(
            f"{path}: mixes verdicts of {len(judgings)} judges or baselines; one file holds one judging"
        )
    return rows


def load_judgments_file(path: str | Path, system: str | None = None) -> pl.DataFrame:
    """Verdicts of a `judgments.jsonl` written by `icalign judge` (system = its folder's name); one in a run
    directory is checked against the run's answers (`check_judged_answers`)."""
    path = Path(path)
    rows = _judgment_rows(path, system or path.parent.name)
    if (
        path.name.startswith("judgments")
        and path.suffix == ".jsonl"
        and (path.parent / GENERATIONS).is_file()
    ):
        check_judged_answers(path, rows)
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


def check_judged_answers(path: Path, rows: list[dict]) -> None:
    """Refuse verdicts that are not for the run's answers as they are now: a run not finished, an answer
    not judged, a verdict for an item the run does not hold or for another answer than it holds."""
    answers = generations_frame(path.parent)
    check_complete(path.parent, answers.height, "report on")
    check_for_answers(pl.DataFrame(rows, schema=SCHEMA), answers, f"the answers {path.parent} holds")
    judged = {(r["query_id"], r["sample"]) for r in rows}
    if len(judged) < answers.height:
        raise UserError(
            f"{path}: verdicts for {len(judged)} of the run's {answers.height} answers; judge the run again"
        )


def check_for_answers(verdicts: pl.DataFrame, answers: pl.DataFrame, what: str) -> None:
    """Refuse verdicts that are not for `answers` (`query_id, sample, response`): an item they do not hold,
    or (where the verdict kept its hash) another answer than theirs, e.g. a run's verdicts set beside
    another system's, or kept after the run's answers changed."""
    held = dict(
        zip(
            zip(answers["query_id"], answers["sample"], strict=True),
            map(answer_digest, answers["response"]),
            strict=True,
        )
    )
    for q, s, digest in verdicts.select("query_id", "sample", "answer_sha256").iter_rows():
        if (q, s) not in held or digest not in (None, held[(q, s)]):
            raise UserError(
                f"verdicts for other answers than {what} (first: query {q} sample {s}); judge again"
            )


def verdicts_file(source: str | Path) -> Path:
    """The judgments file a source names: a run directory's, or the file itself."""
    path = Path(source)
    if path.is_dir():
        target = path / JUDGMENTS
        if not target.exists():
            raise UserError(f"{path}: no {JUDGMENTS} (run `icalign judge --run {path}` first)")
        return target
    if not path.exists():
        raise UserError(f"{path}: not found")
    return path


def load_verdicts(source: str | Path) -> pl.DataFrame:
    """Verdicts of a run directory, a judgments file or a release `*_autoeval.jsonl`."""
    path = verdicts_file(source)
    if path.name.endswith("_autoeval.jsonl"):
        return load_release_verdicts(path)
    return load_judgments_file(path, Path(source).name if Path(source).is_dir() else None)


@dataclass(frozen=True)
class Judged:
    """One system given to `winrate` or `compare`: its verdicts, under a name no other input has, and the
    file they came from (its identity: two inputs are never merged)."""

    name: str
    file: Path
    verdicts: pl.DataFrame

    @property
    def baseline(self) -> tuple[str, str | None]:
        """The baseline its verdicts are against: (recorded name, content hash if recorded)."""
        return self.verdicts["baseline"][0], self.verdicts["baseline_sha256"][0]


def load_systems(sources: Sequence[str | Path]) -> list[Judged]:
    """Each source as one system: named by its folder (a release file: its system), or by the path given
    where two sources share that name; the same verdicts given twice are refused."""
    files = [verdicts_file(s).resolve() for s in sources]
    for i, file in enumerate(files):
        if file in files[:i]:
            first = sources[files.index(file)]
            raise UserError(f"{sources[i]} and {first} are the same verdicts ({file}); name each system once")
    frames = [load_verdicts(s) for s in sources]
    names = [f["system"][0] for f in frames]
    names = [
        n if names.count(n) == 1 else os.path.normpath(str(s)) for n, s in zip(names, sources, strict=True)
    ]
    return [
        Judged(n, f, v.with_columns(pl.lit(n).alias("system")))
        for n, f, v in zip(names, files, frames, strict=True)
    ]


def check_same_baseline(a: Judged, b: Judged) -> None:
    """Refuse to pair systems judged against different contents of their baseline (when both recorded it)."""
    (base_a, sha_a), (_, sha_b) = a.baseline, b.baseline
    if sha_a and sha_b and sha_a != sha_b:
        raise UserError(
            f"{a.name} and {b.name} were judged against different answers of baseline {base_a} (the file "
            "changed between the two judgings): a paired difference needs the same baseline answers"
        )
