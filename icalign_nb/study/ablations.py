"""Notebook 07's experiments beyond the paper: what in the context aligns the model (the ablation
presets), how many demos it needs (the k sweep), and how much the pool's quality matters.

Every ablation is compared with `paper` on the same queries: a paired difference of win rates with a
paired bootstrap interval over prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import polars as pl

from ..analysis.winrates import Bootstrap, paired_comparison, win_rates
from ..data.loaders import load_pool
from ..errors import UserError
from ..generation.rundir import read_retrievals
from ..retrieval.presets import ABLATIONS, K_SWEEP, PRESETS
from .study import Study, System, tagged
from .systems import generate_systems, judge_systems, with_labels


def ablation_study(study: Study, k_sweep: bool, ablations: str) -> Study:
    """The study of the ablations: zero-shot, the k sweep (ending with `paper`, all that fit) and the
    named ablations (comma-separated preset names, or `all`), on the study's model and data, no chat model."""
    chosen = (
        ABLATIONS if ablations.strip() == "all" else [a.strip() for a in ablations.split(",") if a.strip()]
    )
    unknown = [a for a in chosen if a not in PRESETS]
    if unknown:
        raise UserError(f"unknown ablation '{unknown[0]}'; ablations: {', '.join(ABLATIONS)}")
    presets = ["zero-shot", *(K_SWEEP if k_sweep else ["paper"]), *chosen]
    return replace(study, presets=tuple(dict.fromkeys(presets)), chat_model=None)


def pool_systems(study: Study, pool: str) -> list[System]:
    """The `paper` system retrieving from another pool, tagged with it (`paper@pool=alpaca`)."""
    other = replace(study, pool=pool, presets=("paper",), chat_model=None)
    return tagged(other.systems(), f"pool={pool}")


def pool_effect(
    study: Study, pool: str, verdicts: pl.DataFrame, boot: Bootstrap
) -> tuple[pl.DataFrame, dict]:
    """`paper` retrieving from a second pool, generated and judged: both pools' win rates (labelled) and
    the second's paired difference to the first."""
    systems = [study.system("paper"), *generate_systems(study, pool_systems(study, pool))]
    other, _ = judge_systems(study, systems[1:])
    first = verdicts.filter(pl.col("system") == "paper")
    table = with_labels(win_rates(pl.concat([first, other]), boot), systems)
    return table, paired_comparison(other, first, boot)


def k_curve(verdicts: pl.DataFrame, systems: Sequence[System], boot: Bootstrap) -> pl.DataFrame:
    """Win rate against the most demos allowed (k), with CIs; `paper` (all that fit) is placed at the
    mean number of demos its prompts actually held."""
    by_id = {s.id: s for s in systems}
    rows = []
    for preset in K_SWEEP:
        if preset not in by_id:
            continue
        part = verdicts.filter(pl.col("system") == preset)
        kept = [len(r.demo_ids) for r in read_retrievals(by_id[preset].run_dir).values()]
        mean_kept = sum(kept) / len(kept) if kept else 0.0
        k = PRESETS[preset].config.max_demos
        rows.append(
            {
                "preset": preset,
                "k": float(mean_kept if k is None else k),
                "all_that_fit": k is None,
                "mean_demos": mean_kept,
                **{c: win_rates(part, boot).row(0, named=True)[c] for c in ("n", "win", "ci_low", "ci_high")},
            }
        )
    return pl.DataFrame(rows)


def paired_to(
    verdicts: pl.DataFrame, reference: System, others: Sequence[System], boot: Bootstrap
) -> pl.DataFrame:
    """Each system's win rate minus the reference system's, paired over the prompts both answered."""
    base = verdicts.filter(pl.col("system") == reference.id)
    rows = []
    for system in others:
        result = paired_comparison(verdicts.filter(pl.col("system") == system.id), base, boot)
        rows.append(
            {
                "system": system.id,
                "label": system.label,
                **{
                    k: result[k]
                    for k in ("prompts", "win_a", "win_b", "diff", "ci_low", "ci_high", "p_value")
                },
            }
        )
    return pl.DataFrame(rows)


def usable_pool(name: str, data_dir: str | None = None) -> str:
    """`name` if that pool can be read here (fetched or found), else '' after one line saying why:
    checked before the long runs, so a missing second pool does not end the study at its last step."""
    if not name:
        return ""
    try:
        load_pool(name, data_dir)
    except (UserError, OSError) as exc:
        print(f"second pool '{name}' left out: {exc}")
        return ""
    return name
