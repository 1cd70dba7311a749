"""Figures of results: win rates, breakdowns, the paper's table, judge agreement, how generation went."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

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
    min_n: int = 10,
) -> Figure:
    """Win rate per group (bin, cluster, …) for each system, with 95% CIs and the group sizes.

    A group with fewer than `min_n` comparisons is drawn pale and hatched, without an interval (too
    few to say anything with confidence); an interval of zero width (every prompt alike) is not drawn
    either. `all_systems` fixes each system's colour (its position in that list), so a system keeps
    its colour across figures that show different subsets of systems.
    """
    present = (
        table[system_col].unique(maintain_order=True).to_list() if system_col in table.columns else [None]
    )
    systems = [s for s in all_systems if s in present] + [s for s in present if s not in all_systems]
    colour_index = {s: i for i, s in enumerate(list(all_systems) or systems)}
    groups = table[by].unique(maintain_order=True).to_list()
    width = 0.8 / len(systems)
    many = len(groups) > 6
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(min(16, 4 + len(groups) * (0.6 + 0.45 * len(systems))), 6.2))
        x = np.arange(len(groups))
        small_seen = False
        for s, system in enumerate(systems):
            part = table if system is None else table.filter(pl.col(system_col) == system)
            lookup = {row[by]: row for row in part.to_dicts()}
            colour = PALETTE[colour_index.get(system, s) % len(PALETTE)]
            for g_i, g in enumerate(groups):
                row = lookup.get(g)
                if row is None or row["win"] is None:
                    continue
                pos, win, n = x[g_i] - 0.4 + width * (s + 0.5), 100 * row["win"], row.get("n", 0)
                small = n < min_n
                small_seen |= small
                ax.bar(
                    pos,
                    win,
                    width=width * 0.92,
                    color=colour,
                    alpha=0.35 if small else 1.0,
                    hatch="//" if small else "",
                    edgecolor=colour if small else "white",
                    label=str(system)
                    if g_i == next(i for i, gg in enumerate(groups) if gg in lookup)
                    else None,
                )
                low, high = row.get("ci_low"), row.get("ci_high")
                if not small and low is not None and high is not None and high > low:
                    ax.errorbar(
                        pos,
                        win,
                        yerr=[[win - 100 * low], [100 * high - win]],
                        ecolor="black",
                        capsize=3,
                        lw=1.2,
                    )
                if len(systems) <= 3:  # more bars per group are too narrow to carry a label
                    ax.text(
                        pos,
                        1.5,
                        f"{win:.0f}%",
                        ha="center",
                        va="bottom",
                        fontsize=8,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
                    )
        sizes = (
            table.group_by(by).agg(lo=pl.col("n").min(), hi=pl.col("n").max())
            if "n" in table.columns
            else None
        )
        n_of = (
            {} if sizes is None else {r[by]: _n_range(r["lo"], r["hi"]) for r in sizes.iter_rows(named=True)}
        )
        ax.set_xticks(
            x,
            [textwrap.fill(str(g), 14) + (f"\nn = {n_of[g]}" if g in n_of else "") for g in groups],
            rotation=30 if many else 0,
            ha="right" if many else "center",
        )
        ax.set_ylim(0, 105)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("win rate (%)")
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([0], [0], color="black", lw=1.2, marker="_", ms=8, label="95% CI over prompts"))
        if small_seen:
            handles.append(
                Patch(
                    facecolor="white",
                    edgecolor="0.4",
                    hatch="//",
                    label=f"fewer than {min_n} comparisons: no CI",
                )
            )
        ax.legend(handles=handles, title="system", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
        finish(fig, title, judge_note)
    return fig


def plot_paper_table(
    table: pl.DataFrame,
    note: str | None = None,
    proxy: str = "offline proxy judge (embedding, reference-guided)",
) -> Figure:
    """The paper's reported win rates beside recomputed ones (and an offline judge's, named `proxy`), per
    baseline.

    Columns: `system`, `baseline`, `reported` (%), and optionally `recomputed` and `proxy` (%).
    """
    series = [
        ("reported", "reported in the paper (GPT-4 judge)", BLUE, ""),
        ("recomputed", "recomputed from the release's GPT-4 judgments", DARK_GREY, "//"),
        ("proxy", proxy, ORANGE, ".."),
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
                tops = vals
                if f"{col}_ci_low" in part.columns:  # the interval over prompts, where one was computed
                    low = np.array(part[f"{col}_ci_low"].to_list(), dtype=float)
                    high = np.array(part[f"{col}_ci_high"].to_list(), dtype=float)
                    ax.errorbar(
                        x - 0.4 + width * (i + 0.5),
                        vals,
                        yerr=[vals - low, high - vals],
                        fmt="none",
                        ecolor="black",
                        capsize=3,
                        lw=1.1,
                    )
                    tops = np.fmax(vals, high)
                for bar, v, t in zip(bars, vals, tops, strict=True):
                    if not np.isnan(v):
                        ax.text(
                            bar.get_x() + bar.get_width() / 2,
                            t + 1.5,
                            f"{v:.1f}",
                            ha="center",
                            va="bottom",
                            fontsize=9,
                        )
            ax.set_xticks(x, [textwrap.fill(s, 14) for s in part["system"].to_list()])
            ax.set_ylim(0, 105)
            ax.set_ylabel("win rate (%)")
            ax.set_xlabel("system (Llama-2 13B family)")
            ax.set_title(f"against {baseline}", loc="left")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(
            handles, labels, loc="lower center", ncol=len(series), frameon=False, bbox_to_anchor=(0.5, 0)
        )
        names = [c for c, *_ in series]
        shown = "reported" + (" vs recomputed" if "recomputed" in names else " (the release was not found)")
        shown += " and an offline judge's" if "proxy" in names else ""
        finish(fig, f"In-context alignment, the paper's table: win rates {shown}", note, legend_rows=1)
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


def plot_headline(
    zero_shot: tuple[float, float, float],
    in_context: tuple[float, float, float],
    top: dict,
    title: str,
    subtitle: str | None = None,
    labels: tuple[str, str] = ("zero-shot (direct prompt)", "in-context (retrieved demos)"),
) -> Figure:
    """The headline: the zero-shot and in-context win rates (each with its 95% CI), their ratio and
    their paired difference with paired bootstrap intervals. `top` holds ratio, ratio_ci_low,
    ratio_ci_high, diff, diff_ci_low, diff_ci_high (fractions); a win rate is (value, low, high)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(10, 4.2))
        y = np.array([1, 0])
        wins = np.array([zero_shot[0], in_context[0]]) * 100
        lows = np.array([zero_shot[1], in_context[1]]) * 100
        highs = np.array([zero_shot[2], in_context[2]]) * 100
        ax.barh(y, wins, color=[GREY, BLUE], height=0.55)
        ax.errorbar(wins, y, xerr=[wins - lows, highs - wins], fmt="none", ecolor="black", capsize=6, lw=1.6)
        for yi, w, lo, hi in zip(y, wins, lows, highs, strict=True):
            ax.text(hi + 1.5, yi, f"{w:.1f}%  [{lo:.1f}, {hi:.1f}]", va="center", fontsize=12)
        ax.set_yticks(y, list(labels))
        ax.set_xlim(0, 125)
        ax.set_xticks(range(0, 101, 20))
        ax.set_xlabel("win rate against the baseline (%), 95% CI over prompts")
        ax.grid(axis="y", visible=False)
        if top.get("ratio") is None:
            ratio = "ratio: undefined (zero-shot won nothing)"
        else:
            ratio = f"ratio {top['ratio']:.1f}x"
            if top.get("ratio_ci_low") is not None:
                ratio += f" [{top['ratio_ci_low']:.1f}, {top['ratio_ci_high']:.1f}]"
        diff = (
            f"paired difference {100 * top['diff']:+.1f} points "
            f"[{100 * top['diff_ci_low']:+.1f}, {100 * top['diff_ci_high']:+.1f}]"
        )
        ax.text(
            0.99,
            0.5,
            f"{ratio}\n{diff}",
            transform=ax.transAxes,
            ha="right",
            va="center",
            fontsize=12,
            bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": "0.6"},
        )
        finish(fig, title, subtitle)
    return fig


def plot_score_distributions(
    verdicts: pl.DataFrame, title: str, subtitle: str | None = None, order: Sequence[str] = ()
) -> Figure:
    """Per system (in `order` first), how the judge scored its answers and the baseline's."""
    present = verdicts["system"].unique(maintain_order=True).to_list()
    systems = [s for s in order if s in present] + [s for s in present if s not in order]
    scores = np.arange(0, 11)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1, len(systems), figsize=(4.2 * len(systems), 4.6), sharey=True, squeeze=False
        )
        for ax, system in zip(axes[0], systems, strict=True):
            part = verdicts.filter((pl.col("system") == system) & (pl.col("verdict") != "invalid"))
            for offset, (col, name, colour, hatch) in enumerate(
                (
                    ("score_system", "system's answers", BLUE, ""),
                    ("score_baseline", "baseline's answers", GREY, "//"),
                )
            ):
                values = np.round(part[col].to_numpy().astype(float))
                share = np.array([(values == s).mean() * 100 if len(values) else 0 for s in scores])
                ax.bar(
                    scores - 0.2 + 0.4 * offset,
                    share,
                    width=0.4,
                    color=colour,
                    hatch=hatch,
                    edgecolor="white",
                    label=name,
                )
            mean = part["score_system"].mean()
            ax.set_title(
                textwrap.fill(f"{system}\n(mean {mean:.1f}, n = {part.height})", 28), loc="left", fontsize=11
            )
            ax.set_xticks(scores)
            ax.set_xlabel("score given by the judge (0-10)")
        axes[0][0].set_ylabel("comparisons (%)")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 0))
        finish(fig, title, subtitle, legend_rows=1)
    return fig


def plot_k_curve(
    curve: pl.DataFrame,
    title: str,
    subtitle: str | None = None,
    zero_shot: tuple[float, float, float] | None = None,
    paper_mean: float | None = 9.0,
) -> Figure:
    """Win rate against the most demos allowed (k), 95% CIs; the last point is "all that fit" at the
    mean number of demos kept. Zero-shot (its own template, no demos) is a band for reference."""
    rows = curve.sort("k").to_dicts()
    k = np.array([r["k"] for r in rows], dtype=float)
    win = np.array([100 * r["win"] for r in rows])
    low = np.array([100 * r["ci_low"] for r in rows])
    high = np.array([100 * r["ci_high"] for r in rows])
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(10, 5.5))
        if zero_shot is not None:
            ax.axhspan(100 * zero_shot[1], 100 * zero_shot[2], color=GREY, alpha=0.25, lw=0)
            ax.axhline(
                100 * zero_shot[0],
                color=DARK_GREY,
                ls="--",
                lw=1.5,
                label="zero-shot (direct prompt), 95% CI",
            )
        ax.fill_between(k, low, high, color=BLUE, alpha=0.15, lw=0)
        ax.plot(k, win, color=BLUE, marker="o", lw=2, label="in-context, at most k demos (95% CI)")
        for r, x, y in zip(rows, k, win, strict=True):
            note = f"all that fit\n(mean {r['mean_demos']:.1f})" if r["all_that_fit"] else f"k = {int(x)}"
            ax.annotate(
                f"{note}\n{y:.0f}%",
                (x, y),
                textcoords="offset points",
                xytext=(0, 10),
                ha="center",
                fontsize=9,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            )
        if paper_mean is not None:
            ax.axvline(
                paper_mean, color=ORANGE, ls=":", lw=1.5, label=f"the paper's average: ~{paper_mean:g} demos"
            )
        ax.set_xlabel("demonstrations in the prompt (at most k; the last point: all that fit the budget)")
        ax.set_ylabel("win rate (%)")
        ax.set_ylim(0, 105)
        ax.set_xlim(-0.5, max(k.max(initial=0), paper_mean or 0) + 1.5)
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.0))
        finish(fig, title, subtitle, legend_rows=1)
    return fig


def plot_paired_differences(
    table: pl.DataFrame, reference: str, title: str, subtitle: str | None = None
) -> Figure:
    """One bar per system: its win rate minus `reference`'s on the same prompts, with the paired
    bootstrap 95% CI (columns system, diff, ci_low, ci_high, win_a, win_b)."""
    rows = table.to_dicts()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(11, 1.8 + 0.7 * len(rows)))
        y = np.arange(len(rows))[::-1]
        diff = np.array([100 * r["diff"] for r in rows])
        low = np.array([100 * r["ci_low"] for r in rows])
        high = np.array([100 * r["ci_high"] for r in rows])
        colours = [BLUE if d >= 0 else DARK_ORANGE for d in diff]
        ax.barh(y, diff, color=colours, height=0.6)
        ax.errorbar(diff, y, xerr=[diff - low, high - diff], fmt="none", ecolor="black", capsize=5, lw=1.3)
        ax.axvline(0, color="black", lw=1)
        span = max(np.abs(low).max(initial=1), np.abs(high).max(initial=1))
        for yi, r, d, lo, hi in zip(y, rows, diff, low, high, strict=True):
            text = f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]  ({100 * r['win_a']:.0f}% vs {100 * r['win_b']:.0f}%)"
            ax.text(1.02, yi, text, va="center", fontsize=10, transform=ax.get_yaxis_transform())
        ax.set_yticks(y, [textwrap.fill(str(r["system"]), 30) for r in rows])
        ax.set_xlim(-span * 1.1, span * 1.1)  # symmetric about no difference; the numbers stand beside
        ax.set_xlabel(f"win rate minus {reference}'s (percentage points), paired 95% CI over prompts")
        ax.grid(axis="y", visible=False)
        finish(fig, title, subtitle)
    return fig


def _n_range(low: int, high: int) -> str:
    """A group's size, or the range of sizes when the systems' counts differ."""
    return str(high) if low == high else f"{low}–{high}"
