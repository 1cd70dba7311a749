"""Figures of results: win rates, breakdowns, the paper's table, judge agreement, how generation went."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .style import (
    BLUE,
    DARK_GREY,
    DARK_ORANGE,
    GREY,
    LIGHT_BLUE,
    LIGHT_ORANGE,
    ORANGE,
    PALE_BLUE,
    PALETTE,
    PROXY_NOTE,
    STYLE,
    finish,
)

VERDICT_COLOURS = {"win": BLUE, "draw": GREY, "lose": DARK_ORANGE}


def plot_winrates(
    table: pl.DataFrame, baseline: str, judge_note: str | None = PROXY_NOTE, title: str | None = None
) -> Figure:
    """Win / draw / lose shares per system as stacked bars, with the win rate's 95% CI."""
    rows = table.to_dicts()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(11, 1.6 + 0.9 * len(rows)))
        y = np.arange(len(rows))[::-1]
        left = np.zeros(len(rows))
        for verdict in ("win", "draw", "lose"):
            share = np.array([100 * (r.get(verdict) or 0.0) for r in rows])
            ax.barh(
                y,
                share,
                left=left,
                color=VERDICT_COLOURS[verdict],
                edgecolor="white",
                height=0.6,
                hatch={"win": "", "draw": "..", "lose": "//"}[verdict],
                label=verdict,
            )
            left += share
        for yi, r in zip(y, rows, strict=True):
            win = 100 * (r.get("win") or 0.0)
            lo, hi = r.get("ci_low"), r.get("ci_high")
            if lo is not None and hi is not None:
                ax.errorbar(
                    win, yi, xerr=[[win - 100 * lo], [100 * hi - win]], color="black", capsize=5, lw=1.6
                )
                text = f"{win:.0f}% [{100 * lo:.0f}–{100 * hi:.0f}]"
            else:
                text = f"{win:.0f}%"
            ax.text(101.5, yi, f"win {text}  (n = {r.get('n', '?')})", va="center", fontsize=11)
        ax.set_yticks(y, [str(r["system"]) for r in rows])
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"share of comparisons against {baseline} (%)")
        ax.errorbar(
            [], [], xerr=[], color="black", capsize=5, label="95% CI of win rate (bootstrap over prompts)"
        )
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, 0.0))
        ax.grid(axis="y", visible=False)
        finish(fig, title or f"How often each system beats {baseline}", judge_note, legend_rows=1, right=0.8)
    return fig


def plot_breakdown(
    table: pl.DataFrame,
    by: str,
    xlabel: str,
    title: str,
    judge_note: str | None = PROXY_NOTE,
    system_col: str = "system",
    all_systems: Sequence[str] = (),
) -> Figure:
    """Win rate per group (bin, cluster, …) for each system, with 95% CIs and the group sizes.

    `all_systems` fixes each system's colour (its position in that list), so a system keeps its
    colour across figures that show different subsets of systems.
    """
    present = (
        table[system_col].unique(maintain_order=True).to_list() if system_col in table.columns else [None]
    )
    systems = [s for s in all_systems if s in present] + [s for s in present if s not in all_systems]
    colour_index = {s: i for i, s in enumerate(list(all_systems) or systems)}
    groups = table[by].unique(maintain_order=True).to_list()
    width = 0.8 / len(systems)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(max(9, 1.3 * len(groups) * max(1, len(systems) / 2) + 3), 6))
        x = np.arange(len(groups))
        for s, system in enumerate(systems):
            part = table if system is None else table.filter(pl.col(system_col) == system)
            lookup = {row[by]: row for row in part.to_dicts()}
            win = np.array(
                [
                    100 * lookup[g]["win"] if g in lookup and lookup[g]["win"] is not None else np.nan
                    for g in groups
                ]
            )
            pos = x - 0.4 + width * (s + 0.5)
            bars = ax.bar(
                pos,
                win,
                width=width * 0.92,
                color=PALETTE[colour_index.get(system, s) % len(PALETTE)],
                label=str(system) if system is not None else "win rate",
            )
            if "ci_low" in part.columns:
                lo = np.array(
                    [
                        100 * lookup[g]["ci_low"]
                        if g in lookup and lookup[g]["ci_low"] is not None
                        else np.nan
                        for g in groups
                    ]
                )
                hi = np.array(
                    [
                        100 * lookup[g]["ci_high"]
                        if g in lookup and lookup[g]["ci_high"] is not None
                        else np.nan
                        for g in groups
                    ]
                )
                ax.errorbar(
                    pos,
                    win,
                    yerr=[np.clip(win - lo, 0, None), np.clip(hi - win, 0, None)],
                    fmt="none",
                    ecolor="black",
                    capsize=3,
                    lw=1.2,
                )
            if "n" in part.columns:
                for bar, g, w in zip(bars, groups, win, strict=True):
                    if g in lookup:
                        ax.text(
                            bar.get_x() + bar.get_width() / 2,
                            1.5,
                            f"{w:.0f}%\nn={lookup[g]['n']}",
                            ha="center",
                            va="bottom",
                            fontsize=8,
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
                        )
        ax.set_xticks(x, [textwrap.fill(str(g), 16) for g in groups])
        ax.set_ylim(0, 105)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("win rate (%)")
        handles, labels = ax.get_legend_handles_labels()
        if "ci_low" in table.columns:
            handles.append(Line2D([0], [0], color="black", lw=1.2, marker="_", ms=8, label="95% CI"))
        ax.legend(handles=handles, title="system", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
        finish(fig, title, judge_note)
    return fig


def plot_paper_table(table: pl.DataFrame, note: str | None = None) -> Figure:
    """The paper's reported win rates beside recomputed ones (and a proxy judge's), per baseline.

    Columns: `system`, `baseline`, `reported` (%), and optionally `recomputed` and `proxy` (%).
    """
    series = [
        ("reported", "reported in the paper (GPT-4 judge)", BLUE, ""),
        ("recomputed", "recomputed from the release's GPT-4 judgments", DARK_GREY, "//"),
        ("proxy", "offline proxy judge (embedding, reference-guided)", ORANGE, ".."),
    ]
    series = [s for s in series if s[0] in table.columns and table[s[0]].drop_nulls().len() > 0]
    baselines = table["baseline"].unique(maintain_order=True).to_list()
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1,
            len(baselines),
            figsize=(7 * len(baselines), 6),
            squeeze=False,
            width_ratios=[table.filter(pl.col("baseline") == b).height for b in baselines],
        )
        width = 0.8 / len(series)
        for ax, baseline in zip(axes[0], baselines, strict=True):
            part = table.filter(pl.col("baseline") == baseline)
            x = np.arange(part.height)
            for i, (col, label, colour, hatch) in enumerate(series):
                vals = np.array([np.nan if v is None else v for v in part[col].to_list()], dtype=float)
                bars = ax.bar(
                    x - 0.4 + width * (i + 0.5),
                    vals,
                    width=width * 0.95,
                    color=colour,
                    hatch=hatch,
                    edgecolor="white",
                    label=label,
                )
                for bar, v in zip(bars, vals, strict=True):
                    if not np.isnan(v):
                        ax.text(
                            bar.get_x() + bar.get_width() / 2,
                            v + 1,
                            f"{v:.1f}",
                            ha="center",
                            va="bottom",
                            fontsize=9,
                        )
            ax.set_xticks(x, [textwrap.fill(s, 14) for s in part["system"].to_list()])
            ax.set_ylim(0, 100)
            ax.set_ylabel("win rate (%)")
            ax.set_xlabel("system (Llama-2 13B family)")
            ax.set_title(f"against {baseline}", loc="left")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(
            handles, labels, loc="lower center", ncol=len(series), frameon=False, bbox_to_anchor=(0.5, 0)
        )
        finish(
            fig, "In-context alignment, paper table: win rates reported vs recomputed", note, legend_rows=1
        )
    return fig


def plot_agreement(
    table: pl.DataFrame, title: str = "How often the proxy judge agrees with GPT-4", note: str | None = None
) -> Figure:
    """Agreement of a judge with reference verdicts per system, with 95% CIs (columns system, agreement…)."""
    rows = table.to_dicts()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(10, 1.8 + 0.8 * len(rows)))
        y = np.arange(len(rows))[::-1]
        vals = np.array([100 * r["agreement"] for r in rows])
        ax.barh(y, vals, color=LIGHT_BLUE, height=0.6, label="agreement on decisive comparisons")
        if "ci_low" in table.columns:
            lo = np.array([100 * r["ci_low"] for r in rows])
            hi = np.array([100 * r["ci_high"] for r in rows])
            ax.errorbar(
                vals, y, xerr=[vals - lo, hi - vals], fmt="none", ecolor="black", capsize=5, label="95% CI"
            )
        ends = hi if "ci_low" in table.columns else vals
        for yi, v, end, r in zip(y, vals, ends, rows, strict=True):
            if r.get("decisive") is not None:
                label = f"{v:.0f}% of {r['decisive']} decisive comparisons"
            else:
                label = f"{v:.0f}%" + (f" (n = {r['n']})" if "n" in r else "")
            ax.text(end + 2, yi, label, va="center")
        ax.axvline(50, color="0.3", ls=":", lw=1.5, label="chance (50%)")
        ax.set_yticks(y, [str(r["system"]) for r in rows])
        ax.set_xlim(0, 145)
        ax.set_xticks(range(0, 101, 20))
        ax.set_xlabel("verdicts that match GPT-4's (%)")
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 0), ncol=3)
        ax.grid(axis="y", visible=False)
        finish(fig, title, note, legend_rows=1)
    return fig


def plot_generation_summary(stats: pl.DataFrame, subtitle: str | None = None) -> Figure:
    """Per system: prompt length, answer length, and how decoding ended (stop text, end token, length cap)."""
    rows = stats.to_dicts()
    names = [textwrap.fill(str(r["system"]), 22) for r in rows]
    y = np.arange(len(rows))[::-1]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(15, 1.8 + 0.9 * len(rows)), sharey=True)
        for ax, col, xlabel, colour in (
            (axes[0], "prompt_tokens", "mean prompt length (tokens)", LIGHT_BLUE),
            (axes[1], "answer_tokens", "mean answer length (tokens)", LIGHT_ORANGE),
        ):
            vals = np.array([r[col] or 0 for r in rows], dtype=float)
            ax.barh(y, vals, color=colour, height=0.6)
            for yi, v in zip(y, vals, strict=True):
                ax.text(v, yi, f" {v:.0f}", va="center", fontsize=10)
            ax.set_xlim(0, max(vals.max(initial=1), 1) * 1.25)
            ax.set_xlabel(xlabel)
            ax.grid(axis="y", visible=False)
        axes[0].set_yticks(y, names)
        left = np.zeros(len(rows))
        totals = np.array([max(1, r["answers"]) for r in rows], dtype=float)
        for col, lab, colour, hatch in (
            ("stopped_at_stop", "stop text reached", BLUE, ""),
            ("stopped_at_eos", "end-of-text token", PALE_BLUE, ".."),
            ("hit_length_cap", "cut at max_new_tokens", DARK_ORANGE, "//"),
        ):
            share = np.array([100 * (r[col] or 0) for r in rows], dtype=float) / totals
            axes[2].barh(
                y, share, left=left, color=colour, hatch=hatch, edgecolor="white", height=0.6, label=lab
            )
            left += share
        axes[2].set_xlim(0, 100)
        axes[2].set_xlabel("answers (%)")
        axes[2].grid(axis="y", visible=False)
        handles, labels = axes[2].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0))
        finish(fig, "The systems side by side: prompt length, answer length, how answers ended", subtitle, 1)
    return fig
