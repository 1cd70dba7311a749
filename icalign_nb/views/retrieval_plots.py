"""Figures of the retrieval stage: the demo-pool map, one query's candidates and packing, demos kept."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..analysis.poolmap import DemoMap
from ..retrieval.retriever import Retrieval
from .style import (
    BLUE,
    DARK_ORANGE,
    GREY,
    LIGHT_ORANGE,
    MARKERS,
    ORANGE,
    PALE_BLUE,
    PALETTE,
    STYLE,
    finish,
    short,
)

REASONS = {
    "kept": ("kept", BLUE, ""),
    "over_instance_limit": ("skipped: demo over per-demo limit", LIGHT_ORANGE, "//"),
    "over_budget": ("skipped: would overflow budget (packing stops)", DARK_ORANGE, "xx"),
    "after_stop": ("not considered: after the stop", GREY, ".."),
    "over_k": ("packed, past the first k (k-sweep ablation)", PALE_BLUE, "\\\\"),
}


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
    counts = np.bincount(demo_map.cluster, minlength=k)
    names = [f"{demo_map.names[c]} ({counts[c]})" for c in range(k)]
    cluster = [names[c] for c in demo_map.cluster]  # colour and marker both say the cluster
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(12, 8))
        sns.scatterplot(
            x=demo_map.xy[:, 0],
            y=demo_map.xy[:, 1],
            hue=cluster,
            style=cluster,
            hue_order=names,
            style_order=names,
            palette=[PALETTE[c % len(PALETTE)] for c in range(k)],
            markers=[MARKERS[c % len(MARKERS)] for c in range(k)],
            s=42,
            alpha=0.8,
            linewidth=0.4,
            edgecolor="white",
            ax=ax,
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
                    handles.append(Line2D([], [], lw=0, label=f"Q{i + 1}: {short(label, 48)}"))
                ax.annotate(
                    f"Q{i + 1}" if numbered else short(label, 40),
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
        finish(fig, title, subtitle)
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
        fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(12, 9.5), sharex=True, height_ratios=(1, 1, 1))
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
        ax1.set_title("1 · Candidates best first: similarity score", loc="left", fontsize=12)
        bars = ax2.bar(ranks, lengths, color=colours, edgecolor="black", linewidth=0.5)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
        ax2.set_ylabel("demo length\n(tokens)")
        ax2.set_title(
            "2 · Token length of each candidate (a demo over the per-demo limit is skipped)",
            loc="left",
            fontsize=12,
        )
        kept_total = np.cumsum([n if c.kept else 0 for n, c in zip(lengths, cands, strict=True)])
        ax3.step(ranks, kept_total, where="mid", color="black", lw=2, marker="o", ms=4)
        if retrieval.budget:
            ax3.axhline(retrieval.budget, color=DARK_ORANGE, ls="--", lw=1.5)
            ax3.text(
                ranks[-1] + 0.4,
                retrieval.budget,
                f"budget {retrieval.budget:,}",
                color=DARK_ORANGE,
                va="bottom",
                ha="right",
                fontsize=10,
            )
            ax3.set_ylim(0, max(retrieval.budget, kept_total.max(initial=0)) * 1.15)
        ax3.set_ylabel("kept demo tokens\n(running total)")
        ax3.set_title(
            "3 · The budget filling up: packing stops at the first demo that would overflow it",
            loc="left",
            fontsize=12,
        )
        ax3.set_xlabel("candidate rank (1 = most similar to the query)")
        ax3.set_xticks(ranks)
        present = [r for r in REASONS if r in reasons]
        handles = [
            Patch(facecolor=REASONS[r][1], hatch=REASONS[r][2], edgecolor="black", label=REASONS[r][0])
            for r in present
        ]
        handles.append(
            Line2D([0], [0], color="black", lw=2, marker="o", ms=4, label="kept demo tokens so far (panel 3)")
        )
        if retrieval.budget:
            handles.append(
                Line2D(
                    [0],
                    [0],
                    color=DARK_ORANGE,
                    ls="--",
                    lw=1.5,
                    label=f"demo budget ({retrieval.budget:,} tokens, panel 3)",
                )
            )
        fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0))
        n_kept = sum(c.kept for c in cands)
        finish(
            fig,
            f"Which demos the query gets: {n_kept} of {len(cands)} candidates kept",
            subtitle or f"query {retrieval.query_id}: “{short(retrieval.query, 90)}”",
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
        label = f"queries (n = {counts.size})"
        sns.histplot(counts, discrete=True, color=BLUE, alpha=1, edgecolor="white", label=label, ax=ax)
        if counts.size:
            ax.axvline(counts.mean(), color="black", lw=2, label=f"mean here: {counts.mean():.1f}")
        if paper_mean is not None:
            ax.axvline(paper_mean, color=ORANGE, lw=2, ls="--", label=f"paper's average: ~{paper_mean:g}")
        ax.set_xlabel("demonstrations kept in the prompt (count)")
        ax.set_ylabel("queries (count)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(frameon=False, loc="upper left")
        sub = subtitle or (f"packing budget {budget} tokens" if budget else None)
        finish(fig, "How many demonstrations fit in each query's prompt", sub)
    return fig
