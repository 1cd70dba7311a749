"""Figures of judge validation: an offline judge's win rate per system against GPT-4's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .style import BLUE, DARK_ORANGE, GREY, STYLE, finish

# Where a point's label may go, in points from the point: right-below first, then around it.
LABEL_SPOTS = ((7, -11), (7, 3), (-7, -11), (-7, 3), (0, -17), (0, 9))
COLUMN_STEP = 0.045  # labels that fit nowhere near their point go down a column, this far apart (axes)


def place_label(ax: object, text: str, xy: tuple[float, float], taken: list) -> bool:
    """Write a point's label at the first spot near it overlapping nothing in `taken` (labels and markers
    placed before, as display boxes) and staying inside the axes; False when none is free."""
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    for dx, dy in LABEL_SPOTS:
        align = "left" if dx > 0 else "right" if dx < 0 else "center"
        label = ax.annotate(
            text, xy, xytext=(dx, dy), textcoords="offset points", fontsize=8, color="0.25", ha=align
        )
        box = label.get_window_extent(renderer)
        within = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
        if within and not any(box.overlaps(other) for other in taken):
            taken.append(box)
            return True
        label.remove()
    return False


def label_column(ax: object, labelled: list[tuple[str, tuple[float, float]]]) -> None:
    """Labels down the upper-left of the axes, each with a thin leader line to its point."""
    for k, (text, xy) in enumerate(sorted(labelled, key=lambda item: -item[1][1])):
        ax.annotate(
            text,
            xy,
            xytext=(0.03, 0.96 - k * COLUMN_STEP),
            textcoords="axes fraction",
            fontsize=8,
            color="0.25",
            va="center",
            arrowprops={"arrowstyle": "-", "color": "0.65", "lw": 0.6, "shrinkA": 2, "shrinkB": 5},
        )


def marker_box(ax: object, xy: tuple[float, float], size: float = 6.0) -> object:
    """The display box a marker covers (so labels keep off it)."""
    from matplotlib.transforms import Bbox

    x, y = ax.transData.transform(xy)
    pad = size * ax.figure.dpi / 72
    return Bbox([[x - pad, y - pad], [x + pad, y + pad]])


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
            rho = spearman.get(key)
            gap = max((abs(r["win_judge"] - r["win_reference"]) for r in rows), default=float("nan"))
            ax.set_title(f"{heading}\nSpearman {rho:.2f}, largest gap {100 * gap:.0f} points", fontsize=12)
            ax.set_xlim(0, 100)
            ax.set_ylim(0, 100)
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
        # labels last, in the final layout, kept off each other and off the markers
        for ax, (key, _) in zip(axes, judges, strict=True):
            rows = sorted(table.filter(pl.col("judge") == key).to_dicts(), key=lambda r: -r["win_judge"])
            points = [(100 * r["win_reference"], 100 * r["win_judge"]) for r in rows]
            taken = [marker_box(ax, xy) for xy in points]
            names = [labels.get(r["system"], r["system"]) for r in rows]
            label_column(
                ax,
                [(n, xy) for n, xy in zip(names, points, strict=True) if not place_label(ax, n, xy, taken)],
            )
    return fig


JUDGE_STYLE = {  # colour and hatch per offline judge (colour never carries meaning alone)
    "fitted": (BLUE, ""),
    "embedding": (DARK_ORANGE, "//"),
    "length": (GREY, ".."),
}


def plot_agreement_by_judge(
    table: pl.DataFrame,
    judges: Sequence[tuple[str, str]],
    labels: Mapping[str, str] | None = None,
    title: str = "How often each offline judge agrees with GPT-4",
    note: str | None = None,
) -> Figure:
    """Per system, each judge's agreement with GPT-4's decisive verdicts (its draws count as misses), with
    95% intervals; `judges` is (key, legend label) in drawing order; systems in the table's order."""
    labels = labels or {}
    systems = table["system"].unique(maintain_order=True).to_list()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(11, 1.6 + 0.62 * len(systems)))
        height = 0.8 / len(judges)
        y = np.arange(len(systems))[::-1]
        for k, (key, legend) in enumerate(judges):
            part = {r["system"]: r for r in table.filter(pl.col("judge") == key).to_dicts()}
            colour, hatch = JUDGE_STYLE.get(key, (GREY, ""))
            rows = [part.get(s) for s in systems]
            values = np.array(
                [100 * r["agreement"] if r and r["agreement"] is not None else np.nan for r in rows]
            )
            low = np.array([100 * r["ci_low"] if r and r["ci_low"] is not None else np.nan for r in rows])
            high = np.array([100 * r["ci_high"] if r and r["ci_high"] is not None else np.nan for r in rows])
            pos = y + 0.4 - height * (k + 0.5)
            ax.barh(
                pos, values, height=height * 0.92, color=colour, hatch=hatch, edgecolor="white", label=legend
            )
            ax.errorbar(
                values, pos, xerr=[values - low, high - values], fmt="none", ecolor="black", capsize=2, lw=0.8
            )
            for p, v, h in zip(pos, values, high, strict=True):
                if not np.isnan(v):
                    ax.text(h + 1, p, f"{v:.0f}", va="center", fontsize=8)
        ax.axvline(50, color="0.3", ls=":", lw=1.2, label="50%: a coin")
        ax.set_yticks(y, [labels.get(s, s) for s in systems])
        ax.set_xlim(0, 105)
        ax.set_xlabel("GPT-4's decisive verdicts the judge matched (%)")
        ax.grid(axis="y", visible=False)
        handles, names = ax.get_legend_handles_labels()
        fig.legend(
            handles, names, loc="lower center", ncol=len(judges), frameon=False, bbox_to_anchor=(0.5, 0)
        )
        finish(fig, title, note, legend_rows=1)
    return fig
