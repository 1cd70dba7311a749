"""The paper's table: win rates recomputed from the release's judgments, beside the reported numbers."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..data.release import RELEASE_SYSTEMS, release_judgment_files, release_label, release_order
from ..judging.verdicts import load_release_verdicts
from .winrates import Bootstrap, win_rates


def reported_table() -> pl.DataFrame:
    """The paper's reported win rates: ``system, baseline, reported_win`` (ids, not labels)."""
    rows = [
        {"system": s.id, "baseline": base, "reported_win": win}
        for s in RELEASE_SYSTEMS.values()
        for base, win in s.reported.items()
    ]
    return pl.DataFrame(rows, schema={"system": pl.String, "baseline": pl.String, "reported_win": pl.Float64})


def paper_table(
    release: str | Path | None = None, data_dir: str | Path | None = None, boot: Bootstrap | None = None
) -> pl.DataFrame:
    """Every release judgment file recomputed (win/draw/lose, CI, means) beside the reported win rate,
    with each system's and baseline's label for display."""
    files = release_judgment_files(release, data_dir)
    verdicts = pl.concat([load_release_verdicts(f) for f in files])
    table = win_rates(verdicts, boot).join(reported_table(), on=["system", "baseline"], how="left")
    table = table.with_columns(
        pl.col("system").map_elements(release_label, return_dtype=pl.String).alias("label"),
        pl.col("baseline").map_elements(release_label, return_dtype=pl.String).alias("vs"),
        (pl.col("baseline") != "davinci003").alias("_b"),
        pl.col("system").map_elements(release_order, return_dtype=pl.Int64).alias("_s"),
    )
    return table.sort(["_b", "_s", "system"]).drop("_b", "_s")
