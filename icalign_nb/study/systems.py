"""A study's systems generated (or resumed) and judged, and their answers read back as tables keyed by
system id (each table also carries the system's label, for display only)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from ..analysis.breakdowns import run_features
from ..generation.rundir import generations_frame
from ..generation.runs import RunOptions, run_generation
from ..generation.types import Backend
from ..judging.run import JudgeRun, print_summary, run_judge
from ..judging.spec import JudgeSpec, parse_judge_spec
from ..judging.verdicts import load_verdicts
from .study import Study, System, labels


def generate_systems(study: Study, systems: Sequence[System] | None = None) -> list[System]:
    """Generate (or resume) every system's run, each model loaded once; the systems back."""
    chosen = list(systems) if systems is not None else study.systems()
    options = RunOptions(batch_size=study.batch_size, data_dir=study.data_dir)
    backends: dict[str, Backend] = {}
    for system in chosen:
        summary = run_generation(
            system.run_dir, system.spec, options, backend=backends.get(system.spec.model)
        )
        if summary.backend is not None:
            backends[system.spec.model] = summary.backend
        print(
            f"{system.label}: {summary.total} answers ({summary.already_done} already done, "
            f"{summary.generated} new, {summary.seconds:.0f} s)"
        )
    return chosen


def judge_systems(study: Study, systems: Sequence[System]) -> tuple[pl.DataFrame, JudgeSpec]:
    """Judge every system's run against the study's baseline (cached): all verdicts, keyed by system id,
    and the judge that made them."""
    spec = parse_judge_spec(study.judge)
    frames = []
    for system in systems:
        run = JudgeRun(
            system.run_dir,
            study.baseline,
            spec,
            swap=study.swap,
            reference=study.reference,
            data_dir=study.data_dir,
            progress=True,
        )
        print_summary(run_judge(run))
        frames.append(load_verdicts(system.run_dir).with_columns(pl.lit(system.id).alias("system")))
    return pl.concat(frames), spec


def with_labels(table: pl.DataFrame, systems: Sequence[System]) -> pl.DataFrame:
    """The table with a `label` column beside its `system` ids (what figures and tables show)."""
    names = labels(list(systems))
    return table.with_columns(pl.col("system").replace_strict(names, default=pl.col("system")).alias("label"))


def answers(systems: Sequence[System]) -> pl.DataFrame:
    """All systems' answers, long: system (id), label, preset, query_id, sample, query, response, tokens,
    how each ended."""
    frames = [generations_frame(s.run_dir).with_columns(pl.lit(s.id).alias("system")) for s in systems]
    return with_labels(pl.concat(frames, how="diagonal_relaxed"), systems)


def answers_wide(systems: Sequence[System], sample: int = 0) -> pl.DataFrame:
    """One row per query, one column per system's answer, named by the system's label (for reading)."""
    long = answers(systems).filter(pl.col("sample") == sample)
    return long.pivot(on="label", index=["query_id", "query"], values="response", aggregate_function="first")


def generation_stats(systems: Sequence[System]) -> pl.DataFrame:
    """Per system: answers, mean prompt and answer tokens, how decoding ended, seconds."""
    return (
        answers(systems)
        .group_by("system", "label", maintain_order=True)
        .agg(
            answers=pl.len(),
            prompt_tokens=pl.col("n_prompt_tokens").mean().round(0),
            answer_tokens=pl.col("n_generated_tokens").mean().round(1),
            stopped_at_stop=(pl.col("stopped_by") == "stop").sum(),
            stopped_at_eos=(pl.col("stopped_by") == "eos").sum(),
            hit_length_cap=(pl.col("stopped_by") == "length").sum(),
            seconds=pl.col("seconds").sum().round(1),
        )
    )


def system_features(
    study: Study, systems: Sequence[System], clusters: pl.DataFrame | None = None
) -> dict[str, pl.DataFrame]:
    """Per system id, the breakdown features of its answers (demos kept, similarity, lengths, cluster)."""
    return {
        s.id: run_features(s.run_dir, study.baseline, study.eval, clusters, study.data_dir) for s in systems
    }
