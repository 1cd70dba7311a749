"""Figures of judge validation: an offline judge's win rate per system against GPT-4's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .style import BLUE, DARK_ORANGE, GREY, STYLE, finish


def plot_judge_vs_gpt4(
    table: pl.DataFrame,
    judges: Sequence[tuple[str, str]],
    spearman: Mapping[str, float],
    labels: Mapping[str, str] | None = None,
    title: str = "Does an offline judge rank systems as GPT-4 does?",
    note: str | None = None,
) -> Figure:
    """One panel per judge: each system's win rate under the judge (y) against GPT-4's (x), with 95%
    intervals both ways and the diagonal (perfect agreement). `table` has columns judge, system,
    baseline, win_judge, win_reference and their `_ci_low`/`_ci_high`; `judges` is (key, title) per panel;
    release systems (query ids lima-*) are squares, annotated models circles."""
    labels = labels or {}
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(judges), figsize=(6.4 * len(judges), 7.0), sharey=True)
        axes = np.atleast_1d(axes)
        for ax, (key, heading) in zip(axes, judges, strict=True):
            rows = table.filter(pl.col("judge") == key).to_dicts()
            ax.plot([0, 100], [0, 100], color=GREY, ls="--", lw=1.2, zorder=1)
            ax.fill_between([0, 100], [-6, 94], [6, 106], color=GREY, alpha=0.12, lw=0, zorder=0)
            for r in rows:
                x, y = 100 * r["win_reference"], 100 * r["win_judge"]
                release = r["baseline"] in {"davinci003", "chatgpt"}
                colour = DARK_ORANGE if release else BLUE
                ax.errorbar(
                    x,
                    y,
                    xerr=[[x - 100 * r["win_reference_ci_low"]], [100 * r["win_reference_ci_high"] - x]],
                    yerr=[[y - 100 * r["win_judge_ci_low"]], [100 * r["win_judge_ci_high"] - y]],
                    fmt="s" if release else "o",
                    color=colour,
                    ms=7,
                    elinewidth=1,
                    capsize=2,
                    zorder=3,
                )
                name = labels.get(r["system"], r["system"])
                ax.annotate(
                    name, (x, y), xytext=(5, -11), textcoords="offset points", fontsize=8, color="0.25"
                )
            rho = spearman.get(key)
            gap = max((abs(r["win_judge"] - r["win_reference"]) for r in rows), default=float("nan"))
            ax.set_title(f"{heading}\nSpearman {rho:.2f}, largest gap {100 * gap:.0f} points", fontsize=12)
            ax.set_xlim(0, 100)
            ax.set_ylim(0, 100)
            ax.set_aspect("equal")
            ax.set_xlabel("GPT-4's win rate vs text-davinci-003 (%)")
        axes[0].set_ylabel("the offline judge's win rate (%)")
        handles = [
            Line2D(
                [], [], marker="s", ls="", color=DARK_ORANGE, label="paper release system (LIMA, 1500 pairs)"
            ),
            Line2D([], [], marker="o", ls="", color=BLUE, label="AlpacaEval model (805 pairs)"),
            Line2D([], [], color=GREY, ls="--", label="same as GPT-4 (band: within 6 points)"),
        ]
        fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0))
        finish(fig, title, note, legend_rows=1)
    return fig
