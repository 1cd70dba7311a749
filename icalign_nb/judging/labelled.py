"""Comparisons with a reference judge's verdicts: what the fitted judge is fitted to and checked against.

Two sources, one shape (`Labelled`, the system's view: the system's answer against the baseline's):

- the paper release's GPT-4 judgments, `<system>_vs_<baseline>_autoeval.jsonl` beside the system's
  answers (`<system>_outputs_temp0.7.jsonl`) and the baseline's (`<baseline>_results.jsonl`); the
  reference answer is ChatGPT's where the folder has them and the baseline is not ChatGPT itself;
- AlpacaEval annotation files (`instruction`, `output_1` = the baseline, `output_2` = the system,
  `generator_2`, `preference`): 2 = the system wins, 1 = the baseline wins, 1.5 = a draw (a value in
  between: the side it leans to), 0 or null = no verdict. The reference answers come from an
  AlpacaEval outputs file (`instruction`, `output`), matched by instruction.

Systems are keyed by stable ids: a release system's file stem (`llama2-13B_icl-oasstgpt`), an
annotated model's `generator_2`. Query ids are `lima-NNN` for the release and `ae-<hash>` of the
instruction for annotations (so the same instruction has the same id in every file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..data.loaders import load_baseline
from ..data.records import read_records, text_field
from ..data.release import RELEASE_PREFIX, load_release_outputs, outputs_name, release_file, release_names
from ..data.remote import REMOTE_FILES
from ..errors import UserError
from ..files import sha256_file, sha256_text
from .comparisons import answers_by_query
from .verdicts import SCHEMA, load_release_verdicts

ANNOTATION_JUDGE = "gpt-4/alpaca_eval_gpt4 (annotations)"


@dataclass(frozen=True)
class Labelled:
    """One comparison a reference judge decided: the system's answer against the baseline's."""

    system: str
    baseline: str
    query_id: str
    sample: int
    question: str
    answer: str
    baseline_answer: str
    reference: str | None
    verdict: str  # win | draw | lose | invalid, for the system
    judge: str  # who gave the verdict


def release_labelled(
    files: Sequence[Path], reference: str | None = "chatgpt", data_dir: str | Path | None = None
) -> list[Labelled]:
    """The comparisons of release judgment files with GPT-4's verdicts, the answers read beside each file
    (or, for a release file not there, the pinned public copy).

    `reference` names the release answers used as reference (`<reference>_results.jsonl`), except for
    a file whose baseline it is; None: no reference."""
    out: list[Labelled] = []
    for f in files:
        f = Path(f)
        system, baseline = release_names(f)
        outputs = load_release_outputs(_beside(f, outputs_name(system), data_dir))
        base = answers_by_query(load_baseline(_beside(f, f"{baseline}_results.jsonl", data_dir)))[0]
        refs = None
        if reference and reference != baseline:
            refs = answers_by_query(load_baseline(_beside(f, f"{reference}_results.jsonl", data_dir)))[0]
        answers = {(q, s): (p, r) for q, s, p, r in outputs.iter_rows()}
        for row in load_release_verdicts(f).iter_rows(named=True):
            key = (row["query_id"], row["sample"])
            if key not in answers:
                raise UserError(f"{f}: {row['query_id']} sample {row['sample']} has no answer in the outputs")
            prompt, answer = answers[key]
            base_answer = base.get(prompt.strip())
            if base_answer is None:
                raise UserError(f"{f}: no {baseline} answer for {row['query_id']} (matched by prompt text)")
            out.append(
                Labelled(
                    system,
                    baseline,
                    row["query_id"],
                    row["sample"],
                    prompt,
                    answer,
                    base_answer,
                    refs.get(prompt.strip()) if refs else None,
                    row["verdict"],
                    row["judge"],
                )
            )
    return out


def _beside(judged: Path, name: str, data_dir: str | Path | None) -> Path:
    """A release file in the judgment file's folder, else a known public release file (fetched, pinned)."""
    path = judged.parent / name
    if path.exists():
        return path
    if RELEASE_PREFIX + name in REMOTE_FILES:
        return release_file(name, None, data_dir)
    raise UserError(f"{judged}: needs {name} in the same folder")


def annotation_verdict(loc: str, value: object) -> str:
    """The system's verdict from an AlpacaEval `preference` (output_2 is the system)."""
    if value is None:
        return "invalid"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{loc}: field 'preference' must be a number in [1, 2], 0 or null") from None
    if number == 0:
        return "invalid"
    if not 1 <= number <= 2:
        raise UserError(f"{loc}: field 'preference' must be a number in [1, 2], 0 or null, got {value!r}")
    return "win" if number > 1.5 else "lose" if number < 1.5 else "draw"


def instruction_id(instruction: str) -> str:
    """The query id of an AlpacaEval instruction (the same in every file)."""
    return "ae-" + sha256_text(instruction.strip())[:10]


def annotations_labelled(
    files: Sequence[Path], reference: str | Path | None = None, data_dir: str | Path | None = None
) -> list[Labelled]:
    """The comparisons of AlpacaEval annotation files, each model keyed by its `generator_2`; reference
    answers (a file or built-in baseline name) matched by instruction.

    A model named the same in two files is told apart by its file name."""
    refs = answers_by_query(load_baseline(reference, data_dir))[0] if reference else None
    out: list[Labelled] = []
    owner: dict[str, str] = {}
    for f in files:
        f = Path(f)
        records = read_records(f)
        if not records:
            raise UserError(f"{f}: no annotations")
        rows = []
        for loc, obj in records:
            instruction = text_field(loc, obj, "instruction")
            system = text_field(loc, obj, "generator_2", required=False) or f.stem
            baseline = text_field(loc, obj, "generator_1", required=False) or "output_1"
            if "preference" not in obj:
                raise UserError(f"{loc}: missing field 'preference' (fields found: {', '.join(sorted(obj))})")
            rows.append(
                (
                    system,
                    baseline,
                    instruction,
                    text_field(loc, obj, "output_2", empty_ok=True),
                    text_field(loc, obj, "output_1", empty_ok=True),
                    annotation_verdict(loc, obj["preference"]),
                )
            )
        rename = {}
        for system in dict.fromkeys(r[0] for r in rows):
            first = owner.setdefault(system, str(f))
            rename[system] = system if first == str(f) else f"{system} ({f.stem})"
        seen: set[tuple[str, str]] = set()
        for system, baseline, instruction, answer, base_answer, verdict in rows:
            key = (rename[system], instruction.strip())
            if key in seen:  # the same instruction twice for a model counts once
                continue
            seen.add(key)
            out.append(
                Labelled(
                    rename[system],
                    baseline,
                    instruction_id(instruction),
                    0,
                    instruction,
                    answer,
                    base_answer,
                    refs.get(instruction.strip()) if refs else None,
                    verdict,
                    ANNOTATION_JUDGE,
                )
            )
    return out


def without_reference(items: Sequence[Labelled]) -> list[Labelled]:
    """The same comparisons with no reference answer."""
    from dataclasses import replace

    return [replace(x, reference=None) for x in items]


def labelled_verdicts(items: Sequence[Labelled]) -> pl.DataFrame:
    """The reference judge's verdicts as an analysis table (`judging.verdicts.SCHEMA`)."""
    return pl.DataFrame(
        [
            {
                "system": x.system,
                "baseline": x.baseline,
                "judge": x.judge,
                "query_id": x.query_id,
                "sample": x.sample,
                "order": "system_first",
                "score_system": None,
                "score_baseline": None,
                "verdict": x.verdict,
            }
            for x in items
        ],
        schema=SCHEMA,
    )


def source_digests(files: Sequence[Path]) -> dict[str, str]:
    """sha256 of each input file, by file name."""
    return {Path(f).name: sha256_file(Path(f)) for f in files}
