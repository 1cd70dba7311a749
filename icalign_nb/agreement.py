"""How well a judge agrees with another's verdicts (e.g. a proxy judge with the release's GPT-4).

Definitions, over the (query, sample) items both judged validly:

- `agreement`: of the items *both* judges call decisively (win or lose, not draw), the share
  where they pick the same side — "agreement on decisive comparisons". With margin 0 the
  embedding judge is decisive on every item, so this is its agreement with GPT-4's decisive calls.
- `agreement_all`: share of items with the same three-way verdict (win/draw/lose).
- The 95% interval of `agreement` resamples prompts (bootstrap, as for win rates).
"""

from __future__ import annotations

import polars as pl

from .analysis import Bootstrap, bootstrap_ratio, combine_orders


def judge_agreement(judged: pl.DataFrame, reference: pl.DataFrame, boot: Bootstrap | None = None) -> dict:
    """Agreement of `judged` verdicts with `reference` verdicts on shared (query, sample) items."""
    boot = boot or Bootstrap()
    a = combine_orders(judged).filter(pl.col("verdict") != "invalid")
    b = combine_orders(reference).filter(pl.col("verdict") != "invalid")
    both = a.select("query_id", "sample", "verdict").join(
        b.select("query_id", "sample", pl.col("verdict").alias("ref")), on=["query_id", "sample"]
    )
    decisive = both.filter((pl.col("verdict") != "draw") & (pl.col("ref") != "draw"))
    per = decisive.group_by("query_id").agg(
        (pl.col("verdict") == pl.col("ref")).sum().alias("agree"), pl.len().alias("n")
    )
    low, high = bootstrap_ratio(
        per["agree"].to_numpy().astype(float), per["n"].to_numpy().astype(float), boot
    )
    n = both.height

    def share(df: pl.DataFrame, expr: pl.Expr) -> float | None:
        return float(df.filter(expr).height / df.height) if df.height else None

    return {
        "system": judged["system"][0] if judged.height else None,
        "judge": judged["judge"][0] if judged.height else None,
        "reference_judge": reference["judge"][0] if reference.height else None,
        "n": n,
        "win_judge": share(both, pl.col("verdict") == "win"),
        "win_reference": share(both, pl.col("ref") == "win"),
        "decisive": decisive.height,
        "agreement": share(decisive, pl.col("verdict") == pl.col("ref")),
        "ci_low": low if decisive.height else None,
        "ci_high": high if decisive.height else None,
        "agreement_all": share(both, pl.col("verdict") == pl.col("ref")),
    }


def agreement_table(rows: list[dict]) -> pl.DataFrame:
    """Agreement results as one table (one row per system)."""
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
