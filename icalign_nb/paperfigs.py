"""Tables behind the paper's figures: reported win rates, recomputed ones, and the proxy judge's view."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .data import data_root
from .files import cache_dir
from .paper import LABELS, REPORTED, paper_table

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


def locate_release(release_dir: str | None = None, data_dir: str | None = None) -> Path | None:
    """The release folder if it is on this machine (argument, data dir, or an earlier fetch), else None."""
    candidates = [Path(release_dir)] if release_dir else []
    root = data_root(data_dir)
    if root is not None:
        candidates.append(root / "paper_release")
    candidates.append(cache_dir() / "data" / "paper_release")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*_vs_*_autoeval.jsonl")):
            return folder
    return None


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
    from .agreement import agreement_table, judge_agreement
    from .judge import JudgeRun, judgment_rows_frame, make_backend
    from .judges.cache import JudgmentCache
    from .judges.spec import parse_judge_spec
    from .judgments import load_release_verdicts, release_names
    from .release import release_comparisons

    spec = parse_judge_spec(setup.judge)
    run = JudgeRun(Path("."), setup.baseline, spec, reference=setup.reference)
    backend = make_backend(run)
    cache = JudgmentCache(spec.key)
    keep = {f"lima-{i:03d}" for i in range(setup.prompts)}
    verdicts, agreement = [], []
    order = {name: i for i, name in enumerate(LABELS)}
    files = sorted(
        release.glob(f"*_vs_{setup.baseline}_autoeval.jsonl"),
        key=lambda f: (order.get(release_names(f)[0], len(order)), f.name),
    )
    for f in files:
        system, _ = release_names(f)
        comparisons = [
            c
            for c in release_comparisons(f, setup.reference if spec.kind == "embedding" else None, release)
            if c.query_id in keep
        ]
        judged = judgment_rows_frame(comparisons, backend, cache, spec, system, setup.baseline)
        gpt4 = load_release_verdicts(f).filter(pl.col("query_id").is_in(list(keep)))
        verdicts.append(judged)
        agreement.append(judge_agreement(judged, gpt4))
    return pl.concat(verdicts), agreement_table(agreement)
