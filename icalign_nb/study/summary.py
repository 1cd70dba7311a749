"""What a study's verdicts come to: each system's win rate with its interval and share of answers cut
at the cap, the headline (in-context against zero-shot, as a ratio and a paired difference), the
head-to-head pairs beside them, and length-controlled win rates."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import polars as pl

from ..analysis.breakdowns import system_breakdowns
from ..analysis.length import answer_lengths, with_length_control
from ..analysis.winrates import Bootstrap, headline_numbers, paired_comparison, win_rates
from ..judging.spec import JudgeSpec
from ..models.registry import model_spec
from .study import Study, System
from .systems import generation_stats, with_labels

IN_CONTEXT, ZERO_SHOT = "paper", "zero-shot"  # the headline's two systems, by id


@dataclass(frozen=True)
class Breakdown:
    """One breakdown of the win rates: by which feature (binned or not), and how its figure is named."""

    by: str
    bins: int | None
    xlabel: str
    title: str
    name: str


BREAKDOWNS = (
    Breakdown(
        "n_demos",
        None,
        "demonstrations kept in the prompt (count)",
        "Win rate by number of demos in the prompt",
        "04_breakdown_demos_kept",
    ),
    Breakdown(
        "mean_similarity",
        3,
        "mean similarity of the kept demos to the query (dot product, binned)",
        "Win rate by how similar the retrieved demos were",
        "04_breakdown_similarity",
    ),
    Breakdown(
        "length_diff",
        3,
        "answer length minus baseline length (words, binned)",
        "Win rate by answer length relative to the baseline",
        "04_breakdown_length",
    ),
    Breakdown(
        "cluster",
        None,
        "topic cluster of the query on the pool map",
        "Win rate by topic cluster of the query",
        "04_breakdown_cluster",
    ),
)


def breakdowns(
    systems: Sequence[System], verdicts: pl.DataFrame, features: dict[str, pl.DataFrame]
) -> Iterator[tuple[Breakdown, pl.DataFrame]]:
    """Each breakdown's table (labelled) for the systems that have its feature; one line for one none has."""
    for panel in BREAKDOWNS:
        table = system_breakdowns(verdicts, features, panel.by, panel.bins)
        if table.is_empty():
            print(f"no '{panel.by}' for these systems: {panel.name} skipped")
            continue
        yield panel, with_labels(table, systems)


def judge_note(judge: JudgeSpec) -> str:
    """Who judged, as figures say it (a proxy judge is named as one)."""
    proxy = " — a proxy for GPT-4, calibrated in notebook 05" if judge.proxy else ""
    return f"judge: {judge.label}{proxy}"


def headline(verdicts: pl.DataFrame, boot: Bootstrap | None = None) -> dict | None:
    """The paper's headline on these verdicts: in-context (`paper`) against `zero-shot`, as a ratio of win
    rates and a paired difference with paired bootstrap intervals over prompts (None unless both ran)."""
    pick = {key: verdicts.filter(pl.col("system") == key) for key in (IN_CONTEXT, ZERO_SHOT)}
    if any(part.is_empty() for part in pick.values()):
        return None
    return headline_numbers(paired_comparison(pick[IN_CONTEXT], pick[ZERO_SHOT], boot))


def job_summary(
    study: Study,
    systems: Sequence[System],
    verdicts: pl.DataFrame,
    judge: JudgeSpec,
    boot: Bootstrap,
    head_to_head: pl.DataFrame | None = None,
) -> dict:
    """The numbers behind the main figures (`figures/summary.json`): each system's win rate with its CI
    and share of answers cut at the length cap, keyed by id, the headline, and the head-to-head pairs
    (`study.head_to_head.head_to_heads`: A against B directly, with paired intervals) beside them."""
    table = with_labels(win_rates(verdicts, boot), systems)
    stats = {row["system"]: row for row in generation_stats(systems).iter_rows(named=True)}
    rows = [
        {
            "system": row["system"],
            "label": row["label"],
            "n": row["n"],
            "win": row["win"],
            "ci_low": row["ci_low"],
            "ci_high": row["ci_high"],
            "cut_at_cap": stats[row["system"]]["hit_length_cap"] / stats[row["system"]]["answers"],
        }
        for row in table.iter_rows(named=True)
    ]
    return {
        "model": study.model,
        "model_is_base": model_spec(study.model).base,
        "chat_model": study.chat_model,
        "judge": judge.label,
        "baseline": study.baseline,
        "n_queries": int(verdicts["query_id"].n_unique()),
        "max_new_tokens": study.max_new_tokens,
        "systems": rows,
        "headline": headline(verdicts, boot),
        "head_to_head": head_to_head.to_dicts() if head_to_head is not None else [],
    }


def headline_text(summary: dict) -> str:
    """The headline as one sentence, then one per head-to-head pair (what the main job prints at its end)."""
    pairs = [head_to_head_text(row) for row in summary.get("head_to_head", [])]
    top = summary.get("headline")
    if not top:
        return "\n".join(["no headline: the in-context and zero-shot systems were not both run", *pairs])
    ratio = "undefined (zero-shot won nothing)" if top["ratio"] is None else f"{top['ratio']:.1f}x"
    if top["ratio_ci_low"] is not None:
        ratio += f" [{top['ratio_ci_low']:.1f}, {top['ratio_ci_high']:.1f}]"
    line = (
        f"{summary['model']}, {summary['n_queries']} queries, {summary['judge']}: win rate zero-shot "
        f"{100 * top['win_zero_shot']:.1f}% -> in-context {100 * top['win_in_context']:.1f}%; ratio {ratio}; "
        f"paired difference {100 * top['diff']:+.1f} points "
        f"[{100 * top['diff_ci_low']:+.1f}, {100 * top['diff_ci_high']:+.1f}]"
    )
    return "\n".join([line, *pairs])


def head_to_head_text(row: dict) -> str:
    """One head-to-head pair in words, with its paired intervals."""
    return (
        f"head to head, {row['label_a']} against {row['label_b']}: wins {100 * row['win']:.1f}% "
        f"[{100 * row['win_ci_low']:.1f}, {100 * row['win_ci_high']:.1f}], draws {100 * row['draw']:.1f}%, "
        f"loses {100 * row['lose']:.1f}% of {row['n']}; net {100 * row['net']:+.1f} points "
        f"[{100 * row['net_ci_low']:+.1f}, {100 * row['net_ci_high']:+.1f}]"
    )


def headline_args(summary: dict) -> tuple[tuple, tuple, dict]:
    """`plot_headline`'s first three arguments from a job summary: zero-shot and in-context
    (win, CI low, CI high), and the paired ratio and difference."""
    rows = {row["system"]: row for row in summary["systems"]}
    zero, icl = rows[ZERO_SHOT], rows[IN_CONTEXT]
    return (
        (zero["win"], zero["ci_low"], zero["ci_high"]),
        (icl["win"], icl["ci_low"], icl["ci_high"]),
        summary["headline"],
    )


def length_controlled_table(
    study: Study, systems: Sequence[System], verdicts: pl.DataFrame, boot: Bootstrap
) -> pl.DataFrame:
    """Each system's raw and length-controlled win rate (see `analysis.length`), side by side."""
    recorded = dict(verdicts.select("system", "baseline_sha256").unique("system").iter_rows())
    lengths = {
        s.id: answer_lengths(s.run_dir, study.baseline, study.data_dir, recorded.get(s.id)) for s in systems
    }
    table = with_length_control(win_rates(verdicts, boot), verdicts, lengths, boot)
    return with_labels(table, systems).select(
        "system",
        "label",
        "n",
        "win",
        "ci_low",
        "ci_high",
        "lc_win",
        "lc_ci_low",
        "lc_ci_high",
        "mean_length_diff",
    )
