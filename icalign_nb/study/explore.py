"""What the explorer shows, gathered from a study's runs: each query's answers by every system, the
combined verdicts, the retrievals that built the prompts and the baseline answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ..analysis.winrates import combine_orders
from ..data.loaders import load_baseline, load_pool
from ..generation.rundir import RETRIEVALS, read_retrievals, retrieval_for
from ..retrieval.retriever import Retrieval
from .study import Study, System
from .systems import answers


@dataclass(frozen=True)
class Exploration:
    """Everything the explorer view needs, indexed by query id (`answers` and `verdicts` keyed by
    system id, each with the system's label)."""

    query_ids: list[str]
    queries: dict[str, str]
    retrievals: dict[str, Retrieval]
    pool: pl.DataFrame
    answers: pl.DataFrame
    verdicts: pl.DataFrame
    baseline: dict[str, str]
    labels: dict[str, str]


def exploration(study: Study, systems: Sequence[System], verdicts: pl.DataFrame) -> Exploration:
    """Load the runs' answers, the combined verdicts, the retrievals that built the prompts (of the
    `paper` system, else the first that retrieved) and the baseline answers."""
    base = load_baseline(study.baseline, study.data_dir)
    by_prompt = {p.strip(): r for p, r in zip(base["prompt"], base["response"], strict=True)}
    table = answers(systems)
    firsts = table.unique("query_id", keep="first", maintain_order=True)
    ids, texts = firsts["query_id"].to_list(), firsts["query"].to_list()
    by_id = {s.id: s for s in systems}
    retrieving = [s for s in ("paper", *by_id) if s in by_id and (by_id[s].run_dir / RETRIEVALS).exists()]
    recorded = read_retrievals(by_id[retrieving[0]].run_dir) if retrieving else {}
    chosen = {q: r for q in ids if (r := retrieval_for(recorded, q, 0)) is not None and r.candidates}
    pool = load_pool(study.pool, study.data_dir) if chosen else pl.DataFrame()
    return Exploration(
        ids,
        dict(zip(ids, texts, strict=True)),
        chosen,
        pool,
        table,
        combine_orders(verdicts),
        {qid: by_prompt.get(text.strip(), "") for qid, text in zip(ids, texts, strict=True)},
        {s.id: s.label for s in systems},
    )
