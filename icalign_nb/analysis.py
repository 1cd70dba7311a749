"""Win rates with prompt-level bootstrap intervals, position-swap combination, breakdowns, paired tests.

Conventions: `win`, `draw`, `lose` are fractions of the *valid* judgments (`n` of them);
`invalid` counts judgments with no readable scores, which never enter the fractions. Confidence
intervals are percentile intervals of a bootstrap that resamples *prompts* with replacement
(all samples and orders of a prompt move together), since samples of one prompt are not
independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from .errors import UserError

KEYS = ["system", "baseline", "judge"]
ITEM = ["query_id", "sample"]
WINRATE_COLUMNS = [
    "system",
    "baseline",
    "judge",
    "n",
    "win",
    "draw",
    "lose",
    "ci_low",
    "ci_high",
    "mean_score_system",
    "mean_score_baseline",
    "invalid",
]


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap settings: resamples, seed and interval level."""

    n: int = 1000
    seed: int = 0
    level: float = 0.95


def combine_orders(df: pl.DataFrame) -> pl.DataFrame:
    """One verdict per (query, sample) from both position orders, by the rule in `icalign_nb.judge`."""
    if df.is_empty() or df["order"].n_unique() == 1:
        return df
    valid = pl.col("verdict") != "invalid"
    grouped = df.group_by([*KEYS, *ITEM], maintain_order=True).agg(
        pl.col("verdict").filter(valid).alias("_valid"),
        pl.col("score_system").filter(valid).mean().alias("score_system"),
        pl.col("score_baseline").filter(valid).mean().alias("score_baseline"),
        pl.len().alias("_orders"),
    )
    n_valid = pl.col("_valid").list.len()
    combined = (
        pl.when(n_valid == 0)
        .then(pl.lit("invalid"))
        .when(pl.col("_valid").list.n_unique() == 1)
        .then(pl.col("_valid").list.first())
        .otherwise(pl.lit("draw"))
    )
    order = pl.when(pl.col("_orders") > 1).then(pl.lit("combined")).otherwise(pl.lit("single"))
    return grouped.with_columns(verdict=combined, order=order).select(df.columns)


def _per_prompt_table(df: pl.DataFrame) -> pl.DataFrame:
    """Wins `w` and valid judgments `n` per prompt, in query order (so a seeded bootstrap repeats)."""
    return (
        df.filter(pl.col("verdict") != "invalid")
        .group_by("query_id")
        .agg((pl.col("verdict") == "win").sum().alias("w"), pl.len().alias("n"))
        .sort("query_id")
    )


def _per_prompt(df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt (wins, valid judgments) of one system's verdicts."""
    per = _per_prompt_table(df)
    return per["w"].to_numpy().astype(float), per["n"].to_numpy().astype(float)


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, boot: Bootstrap) -> tuple[float, float]:
    """Percentile interval of sum(num)/sum(den) resampling the rows (prompts) with replacement."""
    if len(den) == 0 or den.sum() == 0 or boot.n <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(boot.seed)
    idx = rng.integers(0, len(den), size=(boot.n, len(den)))
    stats = num[idx].sum(axis=1) / np.maximum(den[idx].sum(axis=1), 1e-12)
    tail = (1 - boot.level) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def win_rate_row(df: pl.DataFrame, boot: Bootstrap) -> dict:
    """The win-rate statistics of one (system, baseline, judge) group."""
    valid = df.filter(pl.col("verdict") != "invalid")
    n = valid.height
    count = {v: valid.filter(pl.col("verdict") == v).height for v in ("win", "draw", "lose")}
    wins, totals = _per_prompt(df)
    low, high = bootstrap_ratio(wins, totals, boot)

    def frac(k: str) -> float | None:
        return count[k] / n if n else None

    def mean(col: str) -> float | None:
        value = valid[col].mean() if n else None
        return float(value) if value is not None else None

    return {
        "n": n,
        "win": frac("win"),
        "draw": frac("draw"),
        "lose": frac("lose"),
        "ci_low": low if n else None,
        "ci_high": high if n else None,
        "mean_score_system": mean("score_system"),
        "mean_score_baseline": mean("score_baseline"),
        "invalid": df.height - n,
    }


def win_rates(df: pl.DataFrame, boot: Bootstrap | None = None) -> pl.DataFrame:
    """Per (system, baseline, judge): n, win/draw/lose, bootstrap CI of win, mean scores, invalid."""
    boot = boot or Bootstrap()
    df = combine_orders(df)
    rows = []
    for key, group in df.group_by(KEYS, maintain_order=True):
        rows.append({**dict(zip(KEYS, key, strict=True)), **win_rate_row(group, boot)})
    schema = {c: pl.String for c in KEYS} | {
        "n": pl.Int64,
        **{c: pl.Float64 for c in WINRATE_COLUMNS[4:11]},
        "invalid": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema).select(WINRATE_COLUMNS)


# ---------------------------------------------------------------- breakdowns


def bin_column(df: pl.DataFrame, column: str, bins: int = 4) -> pl.DataFrame:
    """Add `<column>_bin`: quantile bins of a numeric column, labelled by range, ordered low to high."""
    name = f"{column}_bin"
    values = df[column].drop_nulls()
    if values.is_empty():
        return df.with_columns(pl.lit(None, pl.String).alias(name))
    edges = np.unique(np.quantile(values.to_numpy(), np.linspace(0, 1, bins + 1)[1:-1]))
    if len(edges) == 0:
        return df.with_columns(pl.col(column).cast(pl.String).alias(name))
    labels = [f"<= {edges[0]:.3g}"]
    labels += [f"({a:.3g}, {b:.3g}]" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    labels.append(f"> {edges[-1]:.3g}")
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
    retrievals: list[dict] | None = None,
    clusters: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per (query, sample) features for breakdowns.

    Columns: n_demos (demos kept), mean_similarity (mean retrieval score of the kept demos, from
    `icalign retrieve` records), query_words, answer_words, length_diff (system minus baseline
    words), subset (eval set category, e.g. AlpacaEval's dataset) and cluster (topic cluster).
    """
    base = {}
    if baseline is not None:
        base = {p.strip(): r for p, r in zip(baseline["prompt"], baseline["response"], strict=True)}
    similarity: dict[str, float | None] = {}
    for rec in retrievals or []:
        kept = [
            c.get("score") for c in rec.get("candidates", []) if c.get("kept") and c.get("score") is not None
        ]
        similarity[rec["query_id"]] = float(np.mean(kept)) if kept else None
    subsets = dict(zip(eval_set["id"], eval_set["category"], strict=True)) if eval_set is not None else {}
    rows = []
    for g in generations:
        answer_words = _words(g["response"])
        base_answer = base.get(g["query"].strip())
        demo_ids = g.get("demo_ids")
        rows.append(
            {
                "query_id": g["query_id"],
                "sample": g["sample"],
                "n_demos": len(demo_ids) if isinstance(demo_ids, list) else None,
                "mean_similarity": similarity.get(g["query_id"]),
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


def topic_clusters(
    queries: pl.DataFrame, k: int = 8, encoder: object | None = None, seed: int = 0
) -> pl.DataFrame:
    """`query_id, cluster`: k-means over sentence embeddings of the queries (id/query_id, prompt)."""
    from sklearn.cluster import KMeans

    from .embed import Encoder, normalize_rows

    ids = queries["query_id"] if "query_id" in queries.columns else queries["id"]
    texts = queries["prompt"] if "prompt" in queries.columns else queries["query"]
    emb = normalize_rows((encoder or Encoder()).encode(texts.to_list()))
    k = max(1, min(k, len(texts)))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(emb)
    return pl.DataFrame({"query_id": ids, "cluster": labels.astype(np.int64)})


# ---------------------------------------------------------------- paired comparison


def paired_comparison(a: pl.DataFrame, b: pl.DataFrame, boot: Bootstrap | None = None) -> dict:
    """Win rate of system A minus system B on the prompts both were judged on, with a paired bootstrap.

    Resamples shared prompts; reports both win rates, the difference, its interval and the
    two-sided bootstrap share of resamples on the other side of zero (`p_value`).
    """
    boot = boot or Bootstrap()
    a, b = combine_orders(a), combine_orders(b)

    both = _per_prompt_table(a).join(_per_prompt_table(b), on="query_id", suffix="_b").sort("query_id")
    if both.is_empty():
        raise UserError("paired comparison: the two systems share no judged prompt")
    wa, na = both["w"].to_numpy().astype(float), both["n"].to_numpy().astype(float)
    wb, nb = both["w_b"].to_numpy().astype(float), both["n_b"].to_numpy().astype(float)
    rng = np.random.default_rng(boot.seed)
    idx = rng.integers(0, both.height, size=(boot.n, both.height))
    diffs = wa[idx].sum(1) / na[idx].sum(1) - wb[idx].sum(1) / nb[idx].sum(1)
    tail = (1 - boot.level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    diff = wa.sum() / na.sum() - wb.sum() / nb.sum()
    p = 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())
    return {
        "system_a": a["system"][0],
        "system_b": b["system"][0],
        "judge_a": a["judge"][0],
        "judge_b": b["judge"][0],
        "prompts": both.height,
        "win_a": float(wa.sum() / na.sum()),
        "win_b": float(wb.sum() / nb.sum()),
        "diff": float(diff),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": float(min(1.0, p)),
    }


def run_features(
    run_dir: str | Path,
    baseline: str | None = None,
    eval_set: str | None = None,
    retrievals: str | Path | None = None,
    clusters: pl.DataFrame | None = None,
    data_dir: str | None = None,
) -> pl.DataFrame:
    """`item_features` of a run directory, loading the baseline, eval set and retrieval records named."""
    from .data import load_baseline, load_eval
    from .files import read_jsonl
    from .judge import read_generations

    return item_features(
        read_generations(Path(run_dir)),
        load_baseline(baseline, data_dir) if baseline else None,
        load_eval(eval_set, data_dir) if eval_set else None,
        read_jsonl(Path(retrievals)) if retrievals else None,
        clusters,
    )
