"""How well a judge agrees with another's verdicts (e.g. a proxy judge with the release's GPT-4).

Definitions, over the (query, sample) items both judged validly:

- `agreement`: of the items *both* judges call decisively (win or lose, not draw), the share
  where they pick the same side — "agreement on decisive comparisons". With margin 0 the
  embedding judge is decisive on every item, so this is its agreement with GPT-4's decisive calls.
- `agreement_all`: share of items with the same three-way verdict (win/draw/lose).
- The 95% interval of `agreement` resamples prompts (bootstrap, as for win rates).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from ..data.release import release_names
from ..judging.cache import JudgmentCache
from ..judging.comparisons import release_comparisons
from ..judging.run import JudgeRun, judgment_rows_frame
from ..judging.verdicts import load_release_verdicts
from .winrates import Bootstrap, bootstrap_ratio, combine_orders


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


def agreement_on_release(
    files: Sequence[Path],
    judge: JudgeRun,
    release: str | Path | None = None,
    prompts: int | None = None,
    boot: Bootstrap | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A judge on the release's own answers: (its verdicts per system, its agreement with GPT-4's).

    `files` are release judgment files (one system against `judge.baseline` each); `prompts` keeps
    the first N LIMA prompts; the judge's replies are cached like any other.
    """
    backend = judge.backend()
    cache = JudgmentCache(judge.judge.key)
    reference = judge.reference if judge.judge.kind == "embedding" else None
    keep = None if prompts is None else {f"lima-{i:03d}" for i in range(prompts)}
    verdicts, rows = [], []
    for f in files:
        system, _ = release_names(f)
        comparisons = [
            c
            for c in release_comparisons(f, reference, release, judge.data_dir)
            if keep is None or c.query_id in keep
        ]
        judged = judgment_rows_frame(comparisons, backend, cache, judge.judge, system, judge.baseline)
        gpt4 = load_release_verdicts(f)
        if keep is not None:
            gpt4 = gpt4.filter(pl.col("query_id").is_in(sorted(keep)))
        verdicts.append(judged)
        rows.append(judge_agreement(judged, gpt4, boot))
        if say is not None:
            say(f"judged {system} vs {judge.baseline}: {len(comparisons)} comparisons")
    return pl.concat(verdicts), agreement_table(rows)
