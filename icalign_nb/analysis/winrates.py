"""Win rates with prompt-level bootstrap intervals, position-swap combination, paired differences.

Conventions: `win`, `draw`, `lose` are fractions of the *valid* judgments (`n` of them);
`invalid` counts judgments with no readable scores, which never enter the fractions. Confidence
intervals are percentile intervals of a bootstrap that resamples *prompts* with replacement
(all samples and orders of a prompt move together), since samples of one prompt are not
independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ..checks import in_range
from ..errors import UserError

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

    def __post_init__(self) -> None:
        in_range("bootstrap", self.n, at_least=1, whole=True)
        in_range("bootstrap_seed", self.seed, at_least=0, whole=True)
        in_range("level", self.level, above=0, below=1)


def combine_orders(df: pl.DataFrame) -> pl.DataFrame:
    """One verdict per (query, sample) from both position orders, by the rule in `icalign_nb.judging.run`."""
    if df.is_empty() or df["order"].n_unique() == 1:
        return df
    valid = pl.col("verdict") != "invalid"
    combined_columns = {*KEYS, *ITEM, "verdict", "score_system", "score_baseline", "order"}
    grouped = df.group_by([*KEYS, *ITEM], maintain_order=True).agg(
        pl.col("verdict").filter(valid).alias("_valid"),
        pl.col("score_system").filter(valid).mean().alias("score_system"),
        pl.col("score_baseline").filter(valid).mean().alias("score_baseline"),
        pl.len().alias("_orders"),
        *(pl.col(c).first() for c in df.columns if c not in combined_columns),  # the same in both orders
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


def paired_comparison(a: pl.DataFrame, b: pl.DataFrame, boot: Bootstrap | None = None) -> dict:
    """System A's win rate against system B's on the prompts both were judged on, with a paired bootstrap.

    Resamples shared prompts (both systems' verdicts on a prompt move together); reports both win
    rates, their difference and ratio (A / B) with percentile intervals, and the two-sided bootstrap
    share of resamples on the other side of zero (`p_value`). The ratio's interval is left out when B
    wins nothing in some resample (the ratio is then unbounded).
    """
    boot = boot or Bootstrap()
    a, b = combine_orders(a), combine_orders(b)
    judging = [sorted(set(zip(t["baseline"], t["judge"], strict=True))) for t in (a, b)]
    if len(judging[0]) != 1 or judging[0] != judging[1]:
        said = [" and ".join(f"against {base} by {judge}" for base, judge in j) for j in judging]
        raise UserError(
            f"paired comparison: {a['system'][0]} was judged {said[0]}, {b['system'][0]} {said[1]}: "
            "a paired difference needs one baseline and one judge"
        )
    both = _per_prompt_table(a).join(_per_prompt_table(b), on="query_id", suffix="_b").sort("query_id")
    if both.is_empty():
        raise UserError("paired comparison: the two systems share no judged prompt")
    wa, na = both["w"].to_numpy().astype(float), both["n"].to_numpy().astype(float)
    wb, nb = both["w_b"].to_numpy().astype(float), both["n_b"].to_numpy().astype(float)
    rng = np.random.default_rng(boot.seed)
    idx = rng.integers(0, both.height, size=(boot.n, both.height))
    rate_a, rate_b = wa[idx].sum(1) / na[idx].sum(1), wb[idx].sum(1) / nb[idx].sum(1)
    diffs = rate_a - rate_b
    tail = (1 - boot.level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    win_a, win_b = float(wa.sum() / na.sum()), float(wb.sum() / nb.sum())
    bounded = bool((rate_b > 0).all())
    ratio_low, ratio_high = np.percentile(rate_a / rate_b, [tail, 100 - tail]) if bounded else (None, None)
    p = 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())
    return {
        "system_a": a["system"][0],
        "system_b": b["system"][0],
        "baseline": a["baseline"][0],
        "judge": a["judge"][0],
        "prompts": both.height,
        "win_a": win_a,
        "win_b": win_b,
        "diff": win_a - win_b,
        "ci_low": float(low),
        "ci_high": float(high),
        "ratio": win_a / win_b if win_b else None,
        "ratio_ci_low": None if ratio_low is None else float(ratio_low),
        "ratio_ci_high": None if ratio_high is None else float(ratio_high),
        "p_value": float(min(1.0, p)),
    }


def headline_numbers(top: dict) -> dict:
    """The headline of a paired comparison (A in-context, B zero-shot): ratio and paired difference
    with their intervals, and the two win rates."""
    return {
        "ratio": top["ratio"],
        "ratio_ci_low": top["ratio_ci_low"],
        "ratio_ci_high": top["ratio_ci_high"],
        "diff": top["diff"],
        "diff_ci_low": top["ci_low"],
        "diff_ci_high": top["ci_high"],
        "win_in_context": top["win_a"],
        "win_zero_shot": top["win_b"],
    }


def swap_agreement(verdicts: pl.DataFrame) -> pl.DataFrame:
    """Per system: items judged validly in both orders, and how often the two orders gave the same verdict."""
    valid = verdicts.filter(pl.col("verdict") != "invalid")
    pairs = valid.group_by("system", "query_id", "sample", maintain_order=True).agg(
        orders=pl.len(), same=pl.col("verdict").n_unique() == 1
    )
    return (
        pairs.filter(pl.col("orders") == 2)
        .group_by("system", maintain_order=True)
        .agg(pairs=pl.len(), agree=pl.col("same").sum())
        .with_columns(agreement=pl.col("agree") / pl.col("pairs"))
    )
