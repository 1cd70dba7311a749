"""Win rates split by features of each comparison: demos kept, retrieval similarity, answer length,
eval subset, topic cluster. Bins are quantiles shared by every system, so their bars line up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..data.loaders import load_baseline, load_eval
from ..errors import UserError
from ..generation.rundir import RETRIEVALS, read_generations, read_retrievals, retrieval_for
from ..retrieval.retriever import Retrieval
from .winrates import ITEM, KEYS, Bootstrap, combine_orders, win_rate_row


def bin_column(df: pl.DataFrame, column: str, bins: int = 4) -> pl.DataFrame:
    """Add `<column>_bin`: quantile bins of a numeric column, labelled by range ("≤ 390", "391–853",
    "> 1,390" for whole numbers; two decimals otherwise), ordered low to high."""
    name = f"{column}_bin"
    values = df[column].drop_nulls()
    if values.is_empty():
        return df.with_columns(pl.lit(None, pl.String).alias(name))
    whole = values.dtype.is_integer()
    edges = np.quantile(values.to_numpy(), np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(np.floor(edges) if whole else edges)
    if len(edges) == 0:
        return df.with_columns(pl.col(column).cast(pl.String).alias(name))

    def show(x: float) -> str:
        return f"{int(x):,}" if whole else f"{x:.2f}"

    labels = [f"≤ {show(edges[0])}"]
    labels += [
        f"{show(a + 1)}–{show(b)}" if whole else f"{show(a)}–{show(b)}"
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    labels.append(f"> {show(edges[-1])}")
    index = [None if v is None else int(np.searchsorted(edges, v, side="left")) for v in df[column].to_list()]
    binned = pl.Series(name, [None if i is None else labels[i] for i in index], dtype=pl.Enum(labels))
    return df.with_columns(binned)


def breakdown(
    verdicts: pl.DataFrame,
    features: pl.DataFrame,
    by: str,
    bins: int | None = None,
    boot: Bootstrap | None = None,
) -> pl.DataFrame:
    """Win rates per value (or quantile bin) of a feature; features are keyed by query_id[, sample]."""
    if by not in features.columns:
        raise UserError(f"breakdown: no feature '{by}' (have: {', '.join(features.columns)})")
    keys = [k for k in ITEM if k in features.columns]
    table = combine_orders(verdicts).join(features, on=keys, how="inner")
    column = by
    if bins:
        table = bin_column(table, by, bins)
        column = f"{by}_bin"
    boot = boot or Bootstrap()
    rows = []
    for key, group in table.group_by([*KEYS, column], maintain_order=True):
        rows.append({**dict(zip([*KEYS, column], key, strict=True)), **win_rate_row(group, boot)})
    out = pl.DataFrame(rows)
    if out.is_empty():
        return out
    if isinstance(table.schema[column], pl.Enum):  # bins sort low to high, not alphabetically
        out = out.with_columns(pl.col(column).cast(table.schema[column]))
    return out.sort([*KEYS, column], nulls_last=True)


def _words(text: str) -> int:
    return len(text.split())


def item_features(
    generations: list[dict],
    baseline: pl.DataFrame | None = None,
    eval_set: pl.DataFrame | None = None,
    retrievals: dict[tuple[str, int | None], Retrieval] | None = None,
    clusters: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per (query, sample) features for breakdowns.

    Columns: n_demos (demos kept), mean_similarity (mean retrieval score of the kept demos, from the
    retrievals that built the prompts), query_words, answer_words, length_diff (system minus baseline
    words), subset (eval set category, e.g. AlpacaEval's dataset) and cluster (topic cluster).
    """
    base = {}
    if baseline is not None:
        base = {p.strip(): r for p, r in zip(baseline["prompt"], baseline["response"], strict=True)}
    subsets = dict(zip(eval_set["id"], eval_set["category"], strict=True)) if eval_set is not None else {}
    rows = []
    for g in generations:
        answer_words = _words(g["response"])
        base_answer = base.get(g["query"].strip())
        demo_ids = g.get("demo_ids")
        retrieval = retrieval_for(retrievals, g["query_id"], g["sample"]) if retrievals else None
        rows.append(
            {
                "query_id": g["query_id"],
                "sample": g["sample"],
                "n_demos": len(demo_ids) if isinstance(demo_ids, list) else None,
                "mean_similarity": retrieval.mean_similarity if retrieval is not None else None,
                "query_words": _words(g["query"]),
                "answer_words": answer_words,
                "length_diff": answer_words - _words(base_answer) if base_answer is not None else None,
                "subset": subsets.get(g["query_id"]) or None,
            }
        )
    schema = {
        "query_id": pl.String,
        "sample": pl.Int64,
        "n_demos": pl.Int64,
        "mean_similarity": pl.Float64,
        "query_words": pl.Int64,
        "answer_words": pl.Int64,
        "length_diff": pl.Int64,
        "subset": pl.String,
    }
    out = pl.DataFrame(rows, schema=schema)
    if clusters is not None:
        out = out.join(clusters.select("query_id", "cluster"), on="query_id", how="left")
    return out


def run_features(
    run_dir: str | Path,
    baseline: str | None = None,
    eval_set: str | None = None,
    clusters: pl.DataFrame | None = None,
    data_dir: str | None = None,
) -> pl.DataFrame:
    """`item_features` of a run directory: its answers and the retrievals that built their prompts."""
    run_dir = Path(run_dir)
    return item_features(
        read_generations(run_dir),
        load_baseline(baseline, data_dir) if baseline else None,
        load_eval(eval_set, data_dir) if eval_set else None,
        read_retrievals(run_dir) if (run_dir / RETRIEVALS).exists() else None,
        clusters,
    )


def system_breakdowns(
    verdicts: pl.DataFrame, features: dict[str, pl.DataFrame], by: str, bins: int | None = None
) -> pl.DataFrame:
    """Win rates per value (or bin) of a feature for every system that has it, in one table whose
    `group` column orders the values low to high (bins computed over all systems together)."""
    usable = {  # systems where the feature is known and varies (zero-shot has no demos to count)
        system: feats
        for system, feats in features.items()
        if by in feats.columns and feats[by].drop_nulls().n_unique() > 1
    }
    if not usable:
        return pl.DataFrame()
    column = by
    union = pl.concat([f.with_columns(pl.lit(s).alias("_system")) for s, f in usable.items()])
    if bins:
        union = bin_column(union, by, bins)
        column = f"{by}_bin"
        usable = {s: union.filter(pl.col("_system") == s).drop("_system") for s in usable}
        order = (
            [str(c) for c in union.schema[column].categories]
            if isinstance(union.schema[column], pl.Enum)
            else sorted(str(v) for v in union[column].drop_nulls().unique())
        )
    else:
        order = [str(v) for v in union[by].drop_nulls().unique().sort()]
    frames = []
    for system, feats in usable.items():
        part = breakdown(verdicts.filter(pl.col("system") == system), feats, column, None, Bootstrap(n=500))
        if part.height:
            frames.append(part.with_columns(pl.col(column).cast(pl.String).alias("group")))
    if not frames:
        return pl.DataFrame()
    rank = {g: i for i, g in enumerate(order)}
    out = pl.concat(frames, how="diagonal_relaxed")
    return (
        out.with_columns(pl.col("group").replace_strict(rank, default=len(rank)).alias("_order"))
        .sort("_order", maintain_order=True)
        .drop("_order")
    )
