"""Figures for slides: the demo-pool map, retrieval choices, demos kept, win rates, breakdowns, paper table.

Every figure has a title saying what it shows, labelled axes with units, a legend and the seaborn
"colorblind" palette (with markers or hatches where colour alone would carry meaning). Figures made
with a proxy judge say so in their subtitle. `save_figure` writes PNG and SVG atomically.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .files import atomic_write_bytes
from .poolmap import DemoMap
from .retrieve import Retrieval

PALETTE = sns.color_palette("colorblind")
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*", "8", "d"]
STYLE = {
    "font.size": 12,
    "axes.titlesize": 14,
    "axes.labelsize": 12,
    "legend.fontsize": 10,
    "figure.titlesize": 15,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",
    "svg.hashsalt": "icalign-nb",
}
# Why a candidate was kept or skipped: label, colour, hatch (so print and colour-blind readers see it).
REASONS = {
    "kept": ("kept", PALETTE[0], ""),
    "over_instance_limit": ("skipped: demo over per-demo limit", PALETTE[1], "//"),
    "over_budget": ("skipped: would overflow budget (packing stops)", PALETTE[3], "xx"),
    "after_stop": ("not considered: after the stop", PALETTE[7], ".."),
}
VERDICT_COLOURS = {"win": PALETTE[2], "draw": PALETTE[7], "lose": PALETTE[3]}
PROXY_NOTE = "judge: reference-guided embedding similarity (MiniLM), a proxy for GPT-4"


def _short(text: str, width: int = 70) -> str:
    """One line of text, cut with an ellipsis."""
    return textwrap.shorten(" ".join(text.split()), width=width, placeholder="…")


def _finish(fig: Figure, title: str, subtitle: str | None, legend_rows: int = 0, right: float = 1.0) -> None:
    """Bold title and grey subtitle at the top-left, room for a bottom legend, then a tight layout."""
    height = fig.get_figheight()
    # plain figure texts (not suptitle): tight_layout would reserve the room a second time
    fig.text(0.01, 1 - 0.1 / height, title, ha="left", va="top", fontsize=15, fontweight="bold")
    if subtitle:
        fig.text(0.01, 1 - 0.5 / height, subtitle, ha="left", va="top", fontsize=11, color="0.3")
    top = 1 - (0.85 if subtitle else 0.55) / height
    bottom = (0.1 + 0.3 * legend_rows) / height if legend_rows else 0
    fig.tight_layout(rect=(0, bottom, right, top))


def save_figure(fig: Figure, name: str, outdir: str | Path) -> list[Path]:
    """Write `name.png` (150 dpi) and `name.svg` into `outdir`, each atomically; return the paths."""
    outdir = Path(outdir)
    paths = []
    # no dates and fixed SVG ids: a re-run changes a file only if its figure changed
    for ext, kwargs in (("png", {"dpi": 150}), ("svg", {"metadata": {"Date": None}})):
        buf = io.BytesIO()
        with plt.rc_context({"svg.hashsalt": STYLE["svg.hashsalt"]}):  # read at save time
            fig.savefig(buf, format=ext, bbox_inches="tight", facecolor="white", **kwargs)
        path = outdir / f"{name}.{ext}"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def cluster_style(k: int) -> list[tuple[tuple[float, float, float], str]]:
    """Colour and marker of each cluster (colours repeat after ten, markers do not)."""
    return [(PALETTE[c % len(PALETTE)], MARKERS[c % len(MARKERS)]) for c in range(k)]


def plot_demo_map(
    demo_map: DemoMap,
    title: str = "Demonstration pool: each point is a demo, placed by meaning",
    queries_xy: np.ndarray | None = None,
    query_labels: Sequence[str] | None = None,
    links: dict[int, list[str]] | None = None,
    highlight: Sequence[str] = (),
    subtitle: str | None = None,
) -> Figure:
    """The UMAP map coloured by cluster, with queries (stars) and lines from a query to its kept demos."""
    k = len(demo_map.names)
    styles = cluster_style(k)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(12, 8))
        for c in range(k):
            pts = demo_map.xy[demo_map.cluster == c]
            colour, marker = styles[c]
            ax.scatter(
                pts[:, 0],
                pts[:, 1],
                s=42,
                color=colour,
                marker=marker,
                alpha=0.8,
                linewidths=0.4,
                edgecolors="white",
                label=f"{demo_map.names[c]} ({len(pts)})",
            )
        handles, labels = ax.get_legend_handles_labels()
        if links and queries_xy is not None:
            for qi, demo_ids in links.items():
                ends = demo_map.positions(list(demo_ids))
                for j, (x, y) in enumerate(ends):
                    ax.plot(
                        [queries_xy[qi, 0], x],
                        [queries_xy[qi, 1], y],
                        color="0.15",
                        lw=1.0 + 1.2 * (j + 1) / max(1, len(ends)),
                        alpha=0.55,
                        zorder=3,
                    )
                ax.scatter(
                    ends[:, 0], ends[:, 1], s=110, facecolors="none", edgecolors="black", lw=1.3, zorder=4
                )
            handles.append(
                Line2D([0], [0], color="0.15", lw=1.8, label="query → kept demo (thicker = closer to query)")
            )
        if highlight:
            pts = demo_map.positions(list(highlight))
            ax.scatter(pts[:, 0], pts[:, 1], s=110, facecolors="none", edgecolors="black", lw=1.3, zorder=4)
        if queries_xy is not None and len(queries_xy):
            ax.scatter(
                queries_xy[:, 0],
                queries_xy[:, 1],
                marker="*",
                s=260,
                color="black",
                edgecolors="white",
                linewidths=0.8,
                zorder=5,
            )
            handles.append(
                Line2D([0], [0], marker="*", color="black", lw=0, markersize=14, label="evaluation query")
            )
            labels = list(query_labels or [])
            numbered = len(labels) > 1  # several queries: numbers on the map, texts in the legend
            spots = _label_spots(queries_xy, np.vstack([demo_map.xy, queries_xy])) if numbered else None
            for i, label in enumerate(labels):
                if numbered:
                    handles.append(Line2D([], [], lw=0, label=f"Q{i + 1}: {_short(label, 48)}"))
                ax.annotate(
                    f"Q{i + 1}" if numbered else _short(label, 40),
                    queries_xy[i],
                    xytext=spots[i] if numbered else (6, 6),
                    textcoords="data" if numbered else "offset points",
                    fontsize=9,
                    ha="center" if numbered else "left",
                    va="center" if numbered else "bottom",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6", "alpha": 0.9},
                    arrowprops={"arrowstyle": "-", "color": "0.35", "lw": 0.8, "shrinkA": 0, "shrinkB": 5},
                    zorder=6,
                )
        ax.set_xlabel("UMAP dimension 1 (no unit: only distances matter)")
        ax.set_ylabel("UMAP dimension 2 (no unit)")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(
            handles=handles,
            title="cluster: typical terms (demos)",
            loc="upper left",
            bbox_to_anchor=(1.01, 1),
            frameon=False,
            title_fontproperties={"weight": "bold"},
            alignment="left",
        )
        _finish(fig, title, subtitle)
    return fig


def _label_spots(points: np.ndarray, everything: np.ndarray) -> np.ndarray:
    """Where to put a short label for each point so that labels do not overlap (greedy, data units)."""
    span = np.ptp(everything, axis=0) + 1e-9
    box = span * np.array([0.045, 0.03])  # half-size of a "Q8" label, as a share of the plot
    directions = [(1, 1), (-1, 1), (1, -1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0)]
    placed: list[np.ndarray] = []
    spots = []
    for p in points:
        best, best_cost = p + span * 0.04, None
        for radius in (0.04, 0.07, 0.1, 0.13):
            for dx, dy in directions:
                c = p + span * radius * np.array([dx, dy])
                cost = sum(bool(np.all(np.abs(c - q) < 2 * box)) for q in placed)
                cost += sum(bool(np.all(np.abs(c - q) < box)) for q in points)
                if best_cost is None or cost < best_cost:
                    best, best_cost = c, cost
            if best_cost == 0:
                break
        placed.append(best)
        spots.append(best)
    return np.array(spots)


def plot_retrieval_choices(
    retrieval: Retrieval, similarity: str = "dot product", subtitle: str | None = None
) -> Figure:
    """Candidates by rank: similarity score, token length coloured by decision, and the budget filling up."""
    cands = retrieval.candidates
    ranks = np.array([c.rank for c in cands])
    reasons = [c.reason for c in cands]
    lengths = np.array([c.n_tokens for c in cands])
    colours = [REASONS[r][1] for r in reasons]
    hatches = [REASONS[r][2] for r in reasons]
    with plt.rc_context(STYLE):
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 7.5), sharex=True, height_ratios=(1, 1.3))
        if any(c.score is not None for c in cands):
            scores = np.array([np.nan if c.score is None else c.score for c in cands])
            bars = ax1.bar(ranks, scores, color=colours, edgecolor="black", linewidth=0.5)
            for bar, hatch in zip(bars, hatches, strict=True):
                bar.set_hatch(hatch)
            ax1.set_ylabel(f"similarity to query\n({similarity})")
        else:
            ax1.text(
                0.5,
                0.5,
                "random control: candidates are drawn uniformly, no scores",
                ha="center",
                va="center",
                transform=ax1.transAxes,
            )
            ax1.set_yticks([])
        ax1.set_title("Candidates best first: similarity score", loc="left", fontsize=12)
        bars = ax2.bar(ranks, lengths, color=colours, edgecolor="black", linewidth=0.5)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
        kept_total = np.cumsum([n if c.kept else 0 for n, c in zip(lengths, cands, strict=True)])
        ax2b = ax2.twinx()
        ax2b.step(ranks, kept_total, where="mid", color="black", lw=2, marker="o", ms=4)
        if retrieval.budget:
            ax2b.axhline(retrieval.budget, color=PALETTE[3], ls="--", lw=1.5)
            ax2b.set_ylim(0, max(retrieval.budget, kept_total.max(initial=0)) * 1.12)
        ax2b.set_ylabel("kept demo tokens so far\n(tokens, cumulative)")
        ax2b.grid(False)
        ax2b.spines["right"].set_visible(True)
        ax2.set_ylabel("demo length\n(tokens)")
        ax2.set_xlabel("candidate rank (1 = most similar to the query)")
        ax2.set_xticks(ranks)
        ax2.set_title(
            "Token length of each candidate and the prompt budget filling up", loc="left", fontsize=12
        )
        present = [r for r in REASONS if r in reasons]
        handles = [
            Patch(facecolor=REASONS[r][1], hatch=REASONS[r][2], edgecolor="black", label=REASONS[r][0])
            for r in present
        ]
        handles.append(
            Line2D([0], [0], color="black", lw=2, marker="o", ms=4, label="cumulative kept tokens")
        )
        if retrieval.budget:
            handles.append(
                Line2D(
                    [0],
                    [0],
                    color=PALETTE[3],
                    ls="--",
                    lw=1.5,
                    label=f"demo budget ({retrieval.budget} tokens)",
                )
            )
        fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0))
        n_kept = sum(c.kept for c in cands)
        _finish(
            fig,
            f"Which demos the query gets: {n_kept} of {len(cands)} candidates kept",
            subtitle or f"query {retrieval.query_id}: “{_short(retrieval.query, 90)}”",
            legend_rows=2,
        )
    return fig


def plot_demos_kept(
    counts: Sequence[int],
    budget: int | None = None,
    paper_mean: float | None = 9.0,
    subtitle: str | None = None,
) -> Figure:
    """Histogram of how many demos each query's prompt holds, with the mean and the paper's average."""
    counts = np.asarray(counts, dtype=int)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(9, 5.5))
        lo, hi = (counts.min(), counts.max()) if counts.size else (0, 1)
        bins = np.arange(lo - 0.5, hi + 1.5)
        ax.hist(counts, bins=bins, color=PALETTE[0], edgecolor="white", label=f"queries (n = {counts.size})")
        if counts.size:
            ax.axvline(counts.mean(), color="black", lw=2, label=f"mean here: {counts.mean():.1f}")
        if paper_mean is not None:
            ax.axvline(paper_mean, color=PALETTE[1], lw=2, ls="--", label=f"paper's average: ~{paper_mean:g}")
        ax.set_xlabel("demonstrations kept in the prompt (count)")
        ax.set_ylabel("queries (count)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(frameon=False, loc="upper left")
        sub = subtitle or (f"packing budget {budget} tokens" if budget else None)
        _finish(fig, "How many demonstrations fit in each query's prompt", sub)
    return fig


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
        _finish(fig, title or f"How often each system beats {baseline}", judge_note, legend_rows=1, right=0.8)
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
        _finish(fig, title, judge_note)
    return fig


def plot_paper_table(table: pl.DataFrame, note: str | None = None) -> Figure:
    """The paper's reported win rates beside recomputed ones (and a proxy judge's), per baseline.

    Columns: `system`, `baseline`, `reported` (%), and optionally `recomputed` and `proxy` (%).
    """
    series = [
        ("reported", "reported in the paper (GPT-4 judge)", PALETTE[0], ""),
        ("recomputed", "recomputed from the release's GPT-4 judgments", PALETTE[2], "//"),
        ("proxy", "offline proxy judge (embedding, reference-guided)", PALETTE[1], ".."),
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
        _finish(
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
        ax.barh(y, vals, color=PALETTE[4], height=0.6, label="agreement on decisive comparisons")
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
        _finish(fig, title, note, legend_rows=1)
    return fig


def plot_generation_summary(stats: pl.DataFrame, subtitle: str | None = None) -> Figure:
    """Per system: prompt length, answer length, and how decoding ended (stop text, end token, length cap)."""
    rows = stats.to_dicts()
    names = [textwrap.fill(str(r["system"]), 22) for r in rows]
    y = np.arange(len(rows))[::-1]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(15, 1.8 + 0.9 * len(rows)), sharey=True)
        for ax, col, xlabel, colour in (
            (axes[0], "prompt_tokens", "mean prompt length (tokens)", PALETTE[5]),
            (axes[1], "answer_tokens", "mean answer length (tokens)", PALETTE[4]),
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
            ("stopped_at_stop", "stop text reached", PALETTE[2], ""),
            ("stopped_at_eos", "end-of-text token", PALETTE[0], ".."),
            ("hit_length_cap", "cut at max_new_tokens", PALETTE[3], "//"),
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
        _finish(fig, "The systems side by side: prompt length, answer length, how answers ended", subtitle, 1)
    return fig
