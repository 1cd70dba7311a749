"""How well a judge agrees with another's verdicts (a proxy judge with GPT-4's), per system.

Definitions, over the (query, sample) items the reference judge (GPT-4) judged validly:

- `agreement`: of GPT-4's *decisive* verdicts (win or lose), the share the judge called the same
  way; the judge's draws and unreadable replies there count as misses, so a judge gains nothing
  by abstaining. `decisive` is how many there were.
- `win_judge`, `win_reference`: the two judges' win rates of the system on these items, each with
  a 95% interval; `draw_judge`, `draw_reference`: their draw rates.
- `agreement_all`: share of items with the same three-way verdict (win/draw/lose).
- Intervals resample prompts (bootstrap, as for win rates).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from ..judging.cache import JudgmentCache
from ..judging.comparisons import Comparison
from ..judging.labelled import Labelled, labelled_verdicts, release_labelled
from ..judging.run import JudgeRun, judgment_rows_frame
from .winrates import Bootstrap, bootstrap_ratio, combine_orders

AGREEMENT_JSON_KEYS = ["system", "n", "decisive", "agreement", "win_judge", "win_reference"]


def _interval(df: pl.DataFrame, hit: pl.Expr, boot: Bootstrap) -> tuple[float | None, float | None]:
    """Bootstrap interval (over prompts) of the share of rows where `hit` holds."""
    if not df.height:
        return None, None
    per = df.group_by("query_id").agg(hit.sum().alias("k"), pl.len().alias("n")).sort("query_id")
    return bootstrap_ratio(per["k"].to_numpy().astype(float), per["n"].to_numpy().astype(float), boot)


def agreement_row(both: pl.DataFrame, boot: Bootstrap) -> dict:
    """The statistics of one system's items: columns `query_id`, `verdict` (judge), `ref` (GPT-4)."""
    decisive = both.filter(pl.col("ref").is_in(["win", "lose"]))
    valid = both.filter(pl.col("verdict") != "invalid")

    def share(df: pl.DataFrame, expr: pl.Expr) -> float | None:
        return float(df.filter(expr).height / df.height) if df.height else None

    same = pl.col("verdict") == pl.col("ref")
    low, high = _interval(decisive, same, boot)
    wj_low, wj_high = _interval(valid, pl.col("verdict") == "win", boot)
    wr_low, wr_high = _interval(both, pl.col("ref") == "win", boot)
    return {
        "n": both.height,
        "decisive": decisive.height,
        "agreement": share(decisive, same),
        "ci_low": low,
        "ci_high": high,
        "win_judge": share(valid, pl.col("verdict") == "win"),
        "win_judge_ci_low": wj_low,
        "win_judge_ci_high": wj_high,
        "win_reference": share(both, pl.col("ref") == "win"),
        "win_reference_ci_low": wr_low,
        "win_reference_ci_high": wr_high,
        "draw_judge": share(valid, pl.col("verdict") == "draw"),
        "draw_reference": share(both, pl.col("ref") == "draw"),
        "agreement_all": share(both, same),
        "judge_invalid": both.height - valid.height,
    }


def judge_agreement(judged: pl.DataFrame, reference: pl.DataFrame, boot: Bootstrap | None = None) -> dict:
    """Agreement of `judged` verdicts with `reference` verdicts on the items the reference judged validly
    (an item the judge did not judge counts as its miss too)."""
    boot = boot or Bootstrap()
    a = combine_orders(judged)
    b = combine_orders(reference).filter(pl.col("verdict") != "invalid")
    both = b.select("query_id", "sample", pl.col("verdict").alias("ref")).join(
        a.select("query_id", "sample", "verdict"), on=["query_id", "sample"], how="left"
    )
    both = both.with_columns(pl.col("verdict").fill_null("invalid"))
    return {
        "system": reference["system"][0] if reference.height else None,
        "baseline": reference["baseline"][0] if reference.height else None,
        "judge": judged["judge"][0] if judged.height else None,
        "reference_judge": reference["judge"][0] if reference.height else None,
        **agreement_row(both, boot),
    }


def agreement_table(rows: list[dict]) -> pl.DataFrame:
    """Agreement results as one table (one row per system and baseline)."""
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


def labelled_comparisons(items: Sequence[Labelled]) -> list[Comparison]:
    """The comparisons to put to a judge, system first (the order GPT-4 saw in the release)."""
    return [
        Comparison(x.query_id, x.sample, "system_first", x.question, x.answer, x.baseline_answer, x.reference)
        for x in items
    ]


def agreement_on_labelled(
    items: Sequence[Labelled],
    judge: JudgeRun,
    boot: Bootstrap | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A judge on labelled comparisons: (its verdicts with its raw replies, its agreement with the labels
    per system and baseline). The judge's replies are cached like any other."""
    backend = judge.backend()
    cache = JudgmentCache(judge.judge.key)
    verdicts, rows = [], []
    groups: dict[tuple[str, str], list[Labelled]] = {}
    for x in items:
        groups.setdefault((x.system, x.baseline), []).append(x)
    for (system, baseline), group in groups.items():
        judged = judgment_rows_frame(
            labelled_comparisons(group), backend, cache, judge.judge, system, baseline
        )
        verdicts.append(judged)
        rows.append(judge_agreement(judged, labelled_verdicts(group), boot))
        if say is not None:
            say(f"judged {system} vs {baseline}: {len(group)} comparisons")
    return pl.concat(verdicts), agreement_table(rows)


def agreement_on_release(
    files: Sequence[Path],
    judge: JudgeRun,
    release: str | Path | None = None,
    prompts: int | None = None,
    boot: Bootstrap | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A judge on the release's own answers: (its verdicts per system, its agreement with GPT-4's).

    `files` are release judgment files (read beside their answers); the reference answers are
    `judge.reference`'s (a release baseline name, e.g. chatgpt) for judges that read one; `prompts`
    keeps the first N LIMA prompts. `release` is kept for callers that pass it (the files say where)."""
    del release
    reference = judge.reference if judge.judge.kind in {"embedding", "fitted"} else None
    keep = None if prompts is None else {f"lima-{i:03d}" for i in range(prompts)}
    labelled = release_labelled(files, reference, judge.data_dir)
    items = [x for x in labelled if keep is None or x.query_id in keep]
    return agreement_on_labelled(items, judge, boot, say)
