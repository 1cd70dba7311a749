"""Tables behind the paper's figures: reported win rates, recomputed ones, and the proxy judge's view."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..analysis.agreement import agreement_on_release
from ..analysis.paper_table import LABELS, REPORTED, paper_table
from ..data.release import release_names
from ..judging.run import JudgeRun
from ..judging.spec import parse_judge_spec

RELEASE_HINT = (
    "To recompute from the release: set ICALIGN_DATA_DIR to a folder holding paper_release/ "
    "(or pass -p release_dir DIR), or run `icalign paper-table` once online to fetch it "
    "(pinned, sha256-checked)."
)


@dataclass(frozen=True)
class ProxySetup:
    """How the offline proxy judge is run on the release's answers."""

    baseline: str = "davinci003"  # release baseline the systems are compared with
    reference: str = "chatgpt"  # release answers the embedding judge measures closeness to
    judge: str = "embedding"  # judge spec (embedding[:ENCODER])
    prompts: int = 300  # first N prompts of the 300 (fewer: faster, wider intervals)


def reported_table() -> pl.DataFrame:
    """The paper's reported win rates (%) with readable system and baseline names."""
    return REPORTED.select(
        pl.col("system").replace_strict(LABELS, default=pl.col("system")),
        pl.col("baseline").replace_strict(LABELS, default=pl.col("baseline")),
        (pl.col("reported_win") * 100).alias("reported"),
    )


def figure_table(release: Path | None, proxy: pl.DataFrame | None = None) -> pl.DataFrame:
    """Rows for `plots.plot_paper_table`: reported, recomputed (if the release is here), proxy (if run)."""
    if release is None:
        return reported_table()
    table = paper_table(release).filter(pl.col("reported_win").is_not_null())
    out = table.select(
        pl.col("label").alias("system"),
        pl.col("vs").alias("baseline"),
        (pl.col("reported_win") * 100).alias("reported"),
        (pl.col("win") * 100).alias("recomputed"),
        pl.col("system").alias("_key"),
        pl.col("baseline").alias("_base"),
    )
    if proxy is not None and proxy.height:
        wins = proxy.select(
            pl.col("system").alias("_key"),
            pl.col("baseline").alias("_base"),
            (pl.col("win") * 100).alias("proxy"),
        )
        out = out.join(wins, on=["_key", "_base"], how="left")
    return out.drop("_key", "_base")


def short_system_names(table: pl.DataFrame) -> pl.DataFrame:
    """System names without the shared 'Llama-2-13B' prefix (the axis label says it)."""
    return table.with_columns(
        pl.col("system").str.replace("Llama-2-13B ", "").str.replace("Llama-2-chat-13B", "chat model (13B)")
    )


def proxy_on_release(release: Path, setup: ProxySetup) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The proxy judge on the release's answers: (its verdicts per system, its agreement with GPT-4)."""
    judge = JudgeRun(Path("."), setup.baseline, parse_judge_spec(setup.judge), reference=setup.reference)
    order = {name: i for i, name in enumerate(LABELS)}
    files = sorted(
        release.glob(f"*_vs_{setup.baseline}_autoeval.jsonl"),
        key=lambda f: (order.get(release_names(f)[0], len(order)), f.name),
    )
    return agreement_on_release(files, judge, release, prompts=setup.prompts)
