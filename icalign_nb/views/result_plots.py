"""Figures of results: win rates, breakdowns, the paper's table, judge agreement, how generation went.

Bars show the tables' own estimates and 95% intervals (bootstrap over prompts, computed in
`analysis/`): seaborn lays them out and draws them, and never estimates anything again (`_estimates`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import same_color
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

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
    frame,
    system_names,
)

# the parts of a stacked share bar: column, legend text, colour, hatch
VERDICTS = (("win", "win", BLUE, ""), ("draw", "draw", GREY, ".."), ("lose", "lose", DARK_ORANGE, "//"))
# small multiples of score histograms: each system's and the baseline's answers side by side, in %
HISTOGRAMS = {"kind": "hist", "stat": "percent", "common_norm": False, "discrete": True, "multiple": "dodge"}
HISTOGRAMS |= {"shrink": 0.8, "edgecolor": "white", "alpha": 1, "legend": False, "height": 4.6}
WIN_CI = ("win", "ci_low", "ci_high")
ENDINGS = (
    ("stopped_at_stop", "stop text reached", BLUE, ""),
    ("stopped_at_eos", "end-of-text token", PALE_BLUE, ".."),
    ("hit_length_cap", "cut at max_new_tokens", DARK_ORANGE, "//"),
)


def _first(values: ArrayLike) -> float:
    """A bar's estimate: the first of its rows (see `_estimates`)."""
    return float(np.asarray(values)[0])


def _ends(values: ArrayLike) -> tuple[float, float]:
    """A bar's interval: its second and third rows (see `_estimates`)."""
    _, low, high = np.asarray(values)
    return float(low), float(high)


def _estimates(
    table: pl.DataFrame, keys: list[str], value: str = "win", scale: float = 100.0
) -> dict[str, list]:
    """`table` in the long form seaborn aggregates, its numbers kept: per bar (one row per `keys`),
    the estimate, then the interval's low and high ends (`ci_low`, `ci_high`), all in `value` and
    times `scale`, so that `estimator=_first, errorbar=_ends` draws exactly them. A row without both
    ends keeps its estimate alone, and seaborn draws no interval for it."""
    table = table.filter(pl.col(value).is_not_null())
    if table.select(keys).is_duplicated().any():
        raise ValueError(f"two rows for one bar: {', '.join(keys)} must name each row once")
    parts = [table.with_columns(pl.col(value) * scale)]
    if {"ci_low", "ci_high"} <= set(table.columns):
        ends = table.filter(pl.col("ci_low").is_not_null() & pl.col("ci_high").is_not_null())
        parts += [ends.with_columns((pl.col(end) * scale).alias(value)) for end in ("ci_low", "ci_high")]
    return frame(pl.concat(parts))


def _bars(data: dict[str, list], ax: Axes, **kws) -> Axes:
    """seaborn's bars over `_estimates` rows: the estimates in the given colours, the intervals in
    black with caps."""
    style = {"saturation": 1, "gap": 0.06, "capsize": 0.2, "err_kws": {"color": "black", "linewidth": 1.3}}
    return sns.barplot(data, estimator=_first, errorbar=_ends, ax=ax, **style, **kws)


def _each_bar(ax: Axes, order: list[str], levels: list[str]) -> Iterator[tuple[Rectangle, str, str]]:
    """Every bar of one seaborn bar plot on `ax` with its category and hue level (one bar group per
    level, in order; a bar sits within half a step of its category's position)."""
    for level, bars in zip(levels, ax.containers, strict=True):
        for bar in bars:
            yield bar, order[round(bar.get_x() + bar.get_width() / 2)], level


def _label_above(ax: Axes, bar: Rectangle, top: float, text: str, fontsize: int) -> None:
    """`text` centred over a bar, just above `top` (the bar's or its interval's end)."""
    ax.text(bar.get_x() + bar.get_width() / 2, top + 1.5, text, ha="center", va="bottom", fontsize=fontsize)


def _ci_handle(label: str) -> Line2D:
    """A legend entry for the black 95% intervals."""
    return Line2D([0], [0], color="black", lw=1.3, label=label)


def _swatch(colour: str, hatch: str, label: str) -> Patch:
    """A legend entry for bars of one colour and hatch."""
    return Patch(facecolor=colour, hatch=hatch, edgecolor="white", label=label)


def _stacked_shares(ax: Axes, rows: list[dict], parts: Sequence[tuple], totals: np.ndarray) -> list[Patch]:
    """Horizontal bars of each row's parts as % of its total, stacked left to right (top row first);
    returns the parts' legend entries."""
    left = np.zeros(len(rows))
    for col, _, colour, hatch in parts:
        share = np.array([100 * (r.get(col) or 0.0) for r in rows]) / totals
        ax.barh(range(len(rows)), share, left=left, color=colour, hatch=hatch, edgecolor="white", height=0.6)
        left += share
    ax.set(xlim=(0, 100), ylim=(len(rows) - 0.5, -0.5))
    ax.grid(axis="y", visible=False)
    return [_swatch(colour, hatch, label) for _, label, colour, hatch in parts]


def plot_winrates(
    table: pl.DataFrame, baseline: str, judge_note: str | None = PROXY_NOTE, title: str | None = None
) -> Figure:
    """Win / draw / lose shares per system as stacked bars, with the win rate's 95% CI."""
    rows = table.to_dicts()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(11, 1.6 + 0.9 * len(rows)))
        handles = _stacked_shares(ax, rows, VERDICTS, np.ones(len(rows)))
        for y, r in enumerate(rows):
            win, low, high = (None if r.get(k) is None else 100 * r[k] for k in ("win", "ci_low", "ci_high"))
            text = f"{win or 0:.0f}%"
            if low is not None and high is not None:
                ax.errorbar(win, y, xerr=[[win - low], [high - win]], color="black", capsize=5, lw=1.6)
                text += f" [{low:.0f}–{high:.0f}]"
            ax.text(101.5, y, f"win {text}  (n = {r.get('n', '?')})", va="center", fontsize=11)
        ax.set_yticks(range(len(rows)), system_names(table).to_list())
        ax.set_xlabel(f"share of comparisons against {baseline} (%)")
        handles.append(_ci_handle("95% CI of win rate (bootstrap over prompts)"))
        fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, 0.0))
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
    if system_col not in table.columns:
        table = table.with_columns(pl.lit("all").alias(system_col))
    small = pl.col("n") < min_n if "n" in table.columns else pl.lit(False)
    no_ci = small | (pl.col("ci_high") <= pl.col("ci_low"))
    table = table.with_columns(
        system_names(table, system_col),
        pl.col(by).cast(pl.String),
        *(pl.when(no_ci).then(None).otherwise(pl.col(c)).alias(c) for c in ("ci_low", "ci_high")),
        small.alias("small"),
    )
    ranked = list(dict.fromkeys([*all_systems, *table[system_col].unique(maintain_order=True)]))
    name_of = dict(zip(table[system_col], table["name"], strict=True))
    palette = {name_of[s]: PALETTE[i % len(PALETTE)] for i, s in enumerate(ranked) if s in name_of}
    groups = table[by].unique(maintain_order=True).to_list()
    rows = {(r[by], r["name"]): r for r in table.iter_rows(named=True)}
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(min(16, 4 + len(groups) * (0.6 + 0.45 * len(palette))), 6.2))
        layout = {"x": by, "y": "win", "hue": "name", "order": groups, "hue_order": list(palette)}
        _bars(_estimates(table, [by, "name"]), ax, palette=palette, edgecolor="white", legend=False, **layout)
        for bar, group, name in _each_bar(ax, groups, list(palette)):
            row = rows[(group, name)]
            if row["small"]:
                bar.set(alpha=0.35, hatch="//", edgecolor="0.4")
            if len(palette) <= 3:  # more bars per group are too narrow to carry a label
                _label_above(
                    ax, bar, 100 * max(row["win"], row["ci_high"] or 0), f"{100 * row['win']:.0f}%", 8
                )
        n_of = {}
        if "n" in table.columns:
            sizes = table.group_by(by).agg(lo=pl.col("n").min(), hi=pl.col("n").max())
            n_of = {g: str(hi) if lo == hi else f"{lo}–{hi}" for g, lo, hi in sizes.iter_rows()}
        many = len(groups) > 6
        ticks = [textwrap.fill(g, 14) + (f"\nn = {n_of[g]}" if g in n_of else "") for g in groups]
        ax.set_xticks(range(len(groups)), ticks, rotation=30 if many else 0, ha="right" if many else "center")
        ax.set(ylim=(0, 105), xlabel=xlabel, ylabel="win rate (%)")
        handles = [Patch(color=c, label=name) for name, c in palette.items()]
        handles.append(_ci_handle("95% CI over prompts"))
        if table["small"].any():
            label = f"fewer than {min_n} comparisons: no CI"
            handles.append(Patch(facecolor="white", edgecolor="0.4", hatch="//", label=label))
        ax.legend(handles=handles, title="system", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
        finish(fig, title, judge_note)
    return fig


def plot_paper_table(
    table: pl.DataFrame,
    note: str | None = None,
    proxy: str = "offline proxy judge",
) -> Figure:
    """The paper's reported win rates beside recomputed ones (and an offline judge's, named `proxy`), per
    baseline.

    Columns: `system`, `baseline`, `reported` (%), and optionally `recomputed` and `proxy` (%), each
    with `<column>_ci_low` / `<column>_ci_high` where an interval was computed.
    """
    series = [
        ("reported", "reported in the paper (GPT-4 judge)", BLUE, ""),
        ("recomputed", "recomputed from the release's GPT-4 judgments", DARK_GREY, "//"),
        ("proxy", proxy, ORANGE, ".."),
    ]
    series = [s for s in series if s[0] in table.columns and table[s[0]].drop_nulls().len() > 0]
    table = table.with_columns(system_names(table))
    ends = {"win": "", "ci_low": "_ci_low", "ci_high": "_ci_high"}  # each series' value and interval
    long = pl.concat(
        table.select(
            "name",
            "baseline",
            series=pl.lit(label),
            **{
                k: pl.col(f"{col}{end}") if f"{col}{end}" in table.columns else None
                for k, end in ends.items()
            },
        ).cast({k: pl.Float64 for k in ends})
        for col, label, *_ in series
    )
    baselines = table["baseline"].unique(maintain_order=True).to_list()
    palette = {label: colour for _, label, colour, _ in series}
    hatches = {label: hatch for _, label, _, hatch in series}
    with plt.rc_context(STYLE):
        sizes = [table.filter(pl.col("baseline") == b).height for b in baselines]
        width = max(7 * len(baselines), 1.5 * sum(sizes) + 2)  # room for every system's wrapped name
        fig, axes = plt.subplots(1, len(baselines), figsize=(width, 6), width_ratios=sizes)
        for ax, baseline in zip(np.atleast_1d(axes), baselines, strict=True):
            part = long.filter(pl.col("baseline") == baseline)
            order = part["name"].unique(maintain_order=True).to_list()
            data = _estimates(part, ["name", "series"], scale=1.0)
            layout = {"x": "name", "y": "win", "hue": "series", "order": order, "hue_order": list(palette)}
            _bars(data, ax, palette=palette, edgecolor="white", legend=False, **layout)
            rows = {(r["name"], r["series"]): r for r in part.iter_rows(named=True)}
            for bar, name, label in _each_bar(ax, order, list(palette)):
                bar.set_hatch(hatches[label])
                row = rows[(name, label)]
                _label_above(ax, bar, max(row["win"], row["ci_high"] or 0), f"{row['win']:.1f}", 9)
            ax.set_xticks(range(len(order)), [textwrap.fill(s, 12) for s in order])
            ax.set(ylim=(0, 105), ylabel="win rate (%)", xlabel="system")
            rows_of = table.filter(pl.col("baseline") == baseline)
            ax.set_title(f"against {rows_of['vs'][0] if 'vs' in table.columns else baseline}", loc="left")
        handles = [_swatch(colour, hatch, label) for _, label, colour, hatch in series]
        handles += [_ci_handle("95% CI over prompts")] if long["ci_high"].drop_nulls().len() else []
        fig.legend(
            handles=handles, loc="lower center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 0)
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
    table = table.with_columns(system_names(table))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(10, 1.8 + 0.8 * table.height))
        _bars(
            _estimates(table, ["name"], "agreement"), ax, x="agreement", y="name", color=LIGHT_BLUE, width=0.6
        )
        for y, r in enumerate(table.iter_rows(named=True)):
            value = 100 * r["agreement"]
            if r.get("decisive") is not None:
                label = f"{value:.0f}% of {r['decisive']} decisive comparisons"
            else:
                label = f"{value:.0f}%" + (f" (n = {r['n']})" if "n" in r else "")
            ax.text(100 * (r.get("ci_high") or r["agreement"]) + 2, y, label, va="center")
        ax.axvline(50, color="0.3", ls=":", lw=1.5)
        ax.set(xlim=(0, 145), xticks=range(0, 101, 20), xlabel="verdicts that match GPT-4's (%)", ylabel="")
        handles = [
            Patch(color=LIGHT_BLUE, label="agreement on decisive comparisons"),
            _ci_handle("95% CI"),
            Line2D([0], [0], color="0.3", ls=":", lw=1.5, label="chance (50%)"),
        ]
        fig.legend(handles=handles, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 0), ncol=3)
        ax.grid(axis="y", visible=False)
        finish(fig, title, note, legend_rows=1)
    return fig


def plot_generation_summary(stats: pl.DataFrame, subtitle: str | None = None) -> Figure:
    """Per system: prompt length, answer length, and how decoding ended (stop text, end token, length cap)."""
    stats = stats.with_columns(system_names(stats).map_elements(lambda s: textwrap.fill(s, 22), pl.String))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(15, 1.8 + 0.9 * stats.height), sharey=True)
        for ax, col, xlabel, colour in (
            (axes[0], "prompt_tokens", "mean prompt length (tokens)", LIGHT_BLUE),
            (axes[1], "answer_tokens", "mean answer length (tokens)", LIGHT_ORANGE),
        ):
            data = frame(stats.with_columns(pl.col(col).fill_null(0)))
            sns.barplot(data, x=col, y="name", color=colour, saturation=1, width=0.6, errorbar=None, ax=ax)
            ax.bar_label(ax.containers[0], fmt=" {:.0f}", fontsize=10)
            ax.xaxis.set_major_locator(
                MaxNLocator(5, steps=[1, 2, 5, 10], prune="upper")
            )  # clear of the next panel's 0
            ax.set(xlim=(0, max(1, stats[col].max() or 0) * 1.25), xlabel=xlabel, ylabel="")
            ax.grid(axis="y", visible=False)
        totals = np.array([max(1, n) for n in stats["answers"]], dtype=float)
        handles = _stacked_shares(axes[2], stats.to_dicts(), ENDINGS, totals)
        axes[2].set_xlabel("answers (%)")
        fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0))
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
    table = pl.DataFrame([zero_shot, in_context], schema=["win", "ci_low", "ci_high"], orient="row")
    table = table.with_columns(name=pl.Series(labels))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(10, 4.2))
        palette = dict(zip(labels, (GREY, BLUE), strict=True))
        _bars(_estimates(table, ["name"]), ax, x="win", y="name", hue="name", palette=palette, width=0.55)
        for y, (win, low, high) in enumerate(table.select("win", "ci_low", "ci_high").iter_rows()):
            text = f"{100 * win:.1f}%  [{100 * low:.1f}, {100 * high:.1f}]"
            ax.text(100 * high + 1.5, y, text, va="center", fontsize=12)
        ax.set(xlim=(0, 125), xticks=range(0, 101, 20), ylabel="")
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
        box = {"boxstyle": "round,pad=0.4", "fc": "white", "ec": "0.6"}
        ax.text(0.99, 0.5, f"{ratio}\n{diff}", transform=ax.transAxes, ha="right", va="center", bbox=box)
        finish(fig, title, subtitle)
    return fig


PANELS_PER_ROW = 5  # small multiples wrap onto a new row after this many


def plot_score_distributions(
    verdicts: pl.DataFrame, title: str, subtitle: str | None = None, order: Sequence[str] = ()
) -> Figure:
    """Per system (in `order` first), how the judge scored its answers and the baseline's: small
    multiples, one histogram of both answers' scores per system, `PANELS_PER_ROW` to a row."""
    present = verdicts["system"].unique(maintain_order=True).to_list()
    systems = [s for s in order if s in present] + [s for s in present if s not in order]
    name_of = dict(zip(verdicts["system"], system_names(verdicts), strict=True))
    valid = verdicts.filter(pl.col("verdict") != "invalid").with_columns(system_names(verdicts))
    whose = {"score_system": "system's answers", "score_baseline": "baseline's answers"}
    scores = valid.unpivot(list(whose), index="name", variable_name="whose", value_name="score")
    scores = scores.with_columns(pl.col("whose").replace_strict(whose), pl.col("score").round(0))
    with plt.rc_context(STYLE):
        grid = sns.displot(
            frame(scores),
            x="score",
            col="name",
            col_order=[name_of[s] for s in systems],
            col_wrap=min(len(systems), PANELS_PER_ROW),
            hue="whose",
            hue_order=list(whose.values()),
            palette=[BLUE, GREY],
            aspect=4.2 / 4.6,
            **HISTOGRAMS,
        )
        grid.set_titles("")
        for system, ax in zip(systems, grid.axes.flat, strict=True):
            part = valid.filter(pl.col("system") == system)
            for bar in ax.patches:
                bar.set_hatch("//" if same_color(bar.get_facecolor(), GREY) else "")
            text = f"{name_of[system]}\n(mean {part['score_system'].mean() or 0:.1f}, n = {part.height})"
            ax.set_title(textwrap.fill(text, 28), loc="left", fontsize=11)
            ax.set(xticks=range(11), xlabel="score given by the judge (0-10)", ylabel="comparisons (%)")
        handles = [_swatch(BLUE, "", whose["score_system"]), _swatch(GREY, "//", whose["score_baseline"])]
        grid.figure.legend(
            handles=handles, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 0)
        )
        finish(grid.figure, title, subtitle, legend_rows=1)
    return grid.figure


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
    win, low, high = (np.array([100 * r[c] for r in rows]) for c in WIN_CI)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(10, 5.5))
        if zero_shot is not None:
            ax.axhspan(100 * zero_shot[1], 100 * zero_shot[2], color=GREY, alpha=0.25, lw=0)
            label = "zero-shot (direct prompt), 95% CI"
            ax.axhline(100 * zero_shot[0], color=DARK_GREY, ls="--", lw=1.5, label=label)
        ax.fill_between(k, low, high, color=BLUE, alpha=0.15, lw=0)
        ax.plot(k, win, color=BLUE, marker="o", lw=2, label="in-context, at most k demos (95% CI)")
        for r, x, y in zip(rows, k, win, strict=True):
            note = f"all that fit\n(mean {r['mean_demos']:.1f})" if r["all_that_fit"] else f"k = {int(x)}"
            box = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85}
            ax.annotate(
                f"{note}\n{y:.0f}%",
                (x, y),
                (0, 10),
                textcoords="offset points",
                ha="center",
                fontsize=9,
                bbox=box,
            )
        if paper_mean is not None:
            label = f"the paper's average: ~{paper_mean:g} demos"
            ax.axvline(paper_mean, color=ORANGE, ls=":", lw=1.5, label=label)
        ax.set_xlabel("demonstrations in the prompt (at most k; the last point: all that fit the budget)")
        ax.set(
            ylabel="win rate (%)", ylim=(0, 105), xlim=(-0.5, max(k.max(initial=0), paper_mean or 0) + 1.5)
        )
        fig.legend(loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.0))
        finish(fig, title, subtitle, legend_rows=1)
    return fig


def plot_paired_differences(
    table: pl.DataFrame, reference: str, title: str, subtitle: str | None = None
) -> Figure:
    """One bar per system: its win rate minus `reference`'s on the same prompts, with the paired
    bootstrap 95% CI (columns system, diff, ci_low, ci_high, win_a, win_b)."""
    table = table.with_columns(
        system_names(table).map_elements(lambda s: textwrap.fill(s, 30), pl.String),
        pl.when(pl.col("diff") >= 0).then(pl.lit("up")).otherwise(pl.lit("down")).alias("sign"),
    )
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(11, 1.8 + 0.7 * table.height))
        palette = {"up": BLUE, "down": DARK_ORANGE}
        data = _estimates(table, ["name"], "diff")
        _bars(data, ax, x="diff", y="name", hue="sign", palette=palette, dodge=False, width=0.6, legend=False)
        ax.axvline(0, color="black", lw=1)
        for y, r in enumerate(table.iter_rows(named=True)):
            d, lo, hi = (100 * r[c] for c in ("diff", "ci_low", "ci_high"))
            text = f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]  ({100 * r['win_a']:.0f}% vs {100 * r['win_b']:.0f}%)"
            ax.text(1.02, y, text, va="center", fontsize=10, transform=ax.get_yaxis_transform())
        span = 1.1 * max(1.0, 100 * table.select(pl.col("ci_low", "ci_high").abs().max()).max_horizontal()[0])
        ax.set_xlim(-span, span)  # symmetric about no difference; the numbers stand beside
        ax.set_xlabel(f"win rate minus {reference}'s (percentage points), paired 95% CI over prompts")
        ax.set_ylabel("")
        ax.grid(axis="y", visible=False)
        finish(fig, title, subtitle)
    return fig


# head to head: the first system's answer preferred, a draw, the second's preferred
HEAD_TO_HEAD_PARTS = (
    ("win", "first system's answer preferred", BLUE, ""),
    ("draw", "draw (or the two orders disagree)", GREY, ".."),
    ("lose", "second system's answer preferred", DARK_ORANGE, "//"),
)


def plot_head_to_head(table: pl.DataFrame, title: str, subtitle: str | None = None) -> Figure:
    """Head to head, one row per pair (columns label_a, label_b, win, draw, lose, win_ci_low, win_ci_high,
    net, net_ci_low, net_ci_high, n): the shares of items each answer was preferred on, stacked, and the
    net preference (win - lose) with its paired 95% interval."""
    rows = table.to_dicts()
    names = [f"{textwrap.fill(r['label_a'], 34)}\nagainst {textwrap.fill(r['label_b'], 34)}" for r in rows]
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(
            1, 2, figsize=(12, 2.2 + 1.2 * len(rows)), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
        )
        handles = _stacked_shares(left, rows, HEAD_TO_HEAD_PARTS, np.ones(len(rows)))
        for y, r in enumerate(rows):
            win, low, high = (100 * r[k] for k in ("win", "win_ci_low", "win_ci_high"))
            left.errorbar(win, y, xerr=[[win - low], [high - win]], color="black", capsize=5, lw=1.6)
        left.set_yticks(range(len(rows)), names)
        left.set_xlabel(f"share of the (query, sample) items (%), n = {rows[0]['n'] if rows else 0} per pair")
        nets = [100 * r["net"] for r in rows]
        lows = [100 * (r["net"] - r["net_ci_low"]) for r in rows]
        highs = [100 * (r["net_ci_high"] - r["net"]) for r in rows]
        colours = [BLUE if n >= 0 else DARK_ORANGE for n in nets]
        right.barh(range(len(rows)), nets, color=colours, height=0.5)
        right.errorbar(
            nets, range(len(rows)), xerr=[lows, highs], fmt="none", color="black", capsize=5, lw=1.6
        )
        right.axvline(0, color="black", lw=1)
        span = 1.15 * max([1.0, *(100 * abs(r[k]) for r in rows for k in ("net_ci_low", "net_ci_high"))])
        right.set_xlim(-span, span)  # symmetric about no preference
        for y, r in enumerate(rows):
            text = f"{100 * r['net']:+.0f} [{100 * r['net_ci_low']:+.0f}, {100 * r['net_ci_high']:+.0f}]"
            right.text(0.02, y - 0.36, text, fontsize=10, transform=right.get_yaxis_transform())
        right.set_xlabel("net preference for the first (win − lose, points)")
        right.grid(axis="y", visible=False)
        handles.append(_ci_handle("95% CI, paired (bootstrap over prompts)"))
        fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 0.0))
        finish(fig, title, subtitle, legend_rows=2)
    return fig
