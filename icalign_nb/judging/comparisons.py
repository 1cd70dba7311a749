"""What a judge is asked: pairwise comparisons of a system's answer and a baseline's, and its replies.

Answers are matched to a query by its stripped prompt text, then by id; a query with no baseline
(or, for a reference-guided judge, no reference) answer is one clear line naming the generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..data.loaders import load_baseline
from ..data.release import (
    load_release_judgments,
    load_release_outputs,
    outputs_name,
    release_file,
    release_names,
)
from ..errors import UserError

ORDERS = ("system_first", "baseline_first")


@dataclass(frozen=True)
class Comparison:
    """One pairwise judgment to make: a system answer and a baseline answer in a given order."""

    query_id: str
    sample: int
    order: str  # system_first: the system is Assistant 1 (the paper's order); baseline_first: swapped
    question: str
    system: str
    baseline: str
    reference: str | None = None

    @property
    def answer_1(self) -> str:
        """The answer shown first."""
        return self.system if self.order == "system_first" else self.baseline

    @property
    def answer_2(self) -> str:
        """The answer shown second."""
        return self.baseline if self.order == "system_first" else self.system


@dataclass
class Reply:
    """A judge's reply to one comparison: raw text and (Assistant 1, Assistant 2) scores if readable."""

    raw: str
    scores: tuple[float, float] | None
    failed: bool = False  # the request itself failed (not cached; counted as invalid)


def answers_by_query(answers: pl.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """Answer lookup tables: by stripped prompt text, and by id."""
    by_prompt = {p.strip(): r for p, r in zip(answers["prompt"], answers["response"], strict=True)}
    by_id = dict(zip(answers["id"], answers["response"], strict=True))
    return by_prompt, by_id


def answers_by_item(answers: pl.DataFrame) -> tuple[dict, dict]:
    """Per-sample lookup tables of another run's answers: by (prompt text, sample), and by (id, sample)."""
    rows = list(zip(answers["prompt"], answers["id"], answers["sample"], answers["response"], strict=True))
    return {(p.strip(), s): r for p, _, s, r in rows}, {(i, s): r for _, i, s, r in rows}


def _lookup(row: dict, tables: tuple[dict, dict], per_sample: bool = False) -> str | None:
    by_prompt, by_id = tables
    if per_sample:
        return by_prompt.get(
            (row["query"].strip(), row["sample"]), by_id.get((row["query_id"], row["sample"]))
        )
    return by_prompt.get(row["query"].strip(), by_id.get(row["query_id"]))


def _match(row: dict, tables: tuple[dict, dict], what: str, per_sample: bool = False) -> str:
    found = _lookup(row, tables, per_sample)
    if found is None:
        sample = f" sample {row['sample']}" if per_sample else ""
        raise UserError(
            f"{row['_loc']}: field 'query': no {what} answer for query {row['query_id']}{sample} "
            "(matched by prompt text, then by id)"
        )
    return found


def build_comparisons(
    rows: Sequence[dict],
    baseline: pl.DataFrame,
    reference: pl.DataFrame | None = None,
    swap: bool = False,
    reference_optional: bool = False,
) -> list[Comparison]:
    """Comparisons for generation rows: system-first, and baseline-first too when swapping. A baseline
    with a `sample` column (another run's answers) is matched per (query, sample). A query without a
    reference answer is an error unless `reference_optional` (then it has none)."""
    per_sample = "sample" in baseline.columns
    base = answers_by_item(baseline) if per_sample else answers_by_query(baseline)
    ref = answers_by_query(reference) if reference is not None else None
    out = []
    for row in rows:
        base_answer = _match(row, base, "baseline", per_sample)
        ref_answer = None
        if ref is not None and not (reference_optional and _lookup(row, ref) is None):
            ref_answer = _match(row, ref, "reference")
        for order in ORDERS if swap else ORDERS[:1]:
            out.append(
                Comparison(
                    row["query_id"],
                    row["sample"],
                    order,
                    row["query"],
                    row["response"],
                    base_answer,
                    ref_answer,
                )
            )
    return out


def release_comparisons(
    judgment_file: Path,
    reference: str | None,
    release: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> list[Comparison]:
    """Comparisons (system first) for the items of one release judgment file, from the released answers."""
    system, baseline = release_names(judgment_file)
    outputs = load_release_outputs(release_file(outputs_name(system), release, data_dir))
    base = load_baseline(release_file(f"{baseline}_results.jsonl", release, data_dir))
    ref = load_baseline(release_file(f"{reference}_results.jsonl", release, data_dir)) if reference else None
    judged = {(q, s) for q, s, _ in load_release_judgments(judgment_file).iter_rows()}
    rows = [
        {"query_id": q, "sample": s, "query": p, "response": r, "_loc": f"{judgment_file}"}
        for q, s, p, r in outputs.iter_rows()
        if (q, s) in judged
    ]
    return build_comparisons(rows, base, ref)
