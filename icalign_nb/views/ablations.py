"""Notebook 07's experiments beyond the paper: what in the context aligns the model (the ablation
presets), how many demos it needs (the k sweep), and how much the pool's quality matters.

Every ablation is compared with `paper` on the same queries: a paired difference of win rates with a
paired bootstrap interval over prompts.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl

from ..analysis.winrates import Bootstrap, paired_comparison, win_rates
from ..errors import UserError
from ..generation.rundir import read_retrievals
from ..retrieval.presets import ABLATIONS, K_SWEEP, PRESETS
from .systems import SystemsSetup, label


def ablation_setup(params: dict, k_sweep: bool, ablations: str) -> SystemsSetup:
    """The systems of an ablation study: zero-shot, the k sweep (ending with `paper`, all that fit)
    and the named ablations (comma-separated preset names, or `all`), on the notebook's model and data."""
    chosen = (
        ABLATIONS if ablations.strip() == "all" else [a.strip() for a in ablations.split(",") if a.strip()]
    )
    unknown = [a for a in chosen if a not in PRESETS]
    if unknown:
        raise UserError(f"unknown ablation '{unknown[0]}'; ablations: {', '.join(ABLATIONS)}")
    presets = ["zero-shot", *(K_SWEEP if k_sweep else ["paper"]), *chosen]
    return replace(SystemsSetup.from_notebook(params), presets=tuple(dict.fromkeys(presets)), chat_model=None)


def k_curve(verdicts: pl.DataFrame, runs: dict[str, Path], boot: Bootstrap) -> pl.DataFrame:
    """Win rate against the most demos allowed (k), with CIs; `paper` (all that fit) is placed at the
    mean number of demos its prompts actually held."""
    rows = []
    for preset in K_SWEEP:
        if preset not in runs:
            continue
        part = verdicts.filter(pl.col("system") == label(preset))
        kept = [len(r.demo_ids) for r in read_retrievals(runs[preset]).values()]
        mean_kept = sum(kept) / len(kept) if kept else 0.0
        k = PRESETS[preset].max_demos
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


def paired_to(verdicts: pl.DataFrame, reference: str, systems: list[str], boot: Bootstrap) -> pl.DataFrame:
    """Each system's win rate minus the reference system's, paired over the prompts both answered."""
    base = verdicts.filter(pl.col("system") == label(reference))
    rows = []
    for key in systems:
        result = paired_comparison(verdicts.filter(pl.col("system") == label(key)), base, boot)
        rows.append(
            {
                "preset": key,
                "system": label(key),
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
    from ..data.loaders import load_pool

    if not name:
        return ""
    try:
        load_pool(name, data_dir)
    except (UserError, OSError) as exc:
        print(f"second pool '{name}' left out: {exc}")
        return ""
    return name
