"""What the explorer shows, gathered from a study's runs: each query's answers by every system, the
combined verdicts with what moved each (the fitted judge's three strongest features, in words), the
retrievals that built the prompts and the baseline answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ..analysis.winrates import combine_orders
from ..data.loaders import load_baseline, load_pool
from ..generation.rundir import RETRIEVALS, read_retrievals, retrieval_for
from ..judging.backends.fitted import moved_in_words
from ..judging.run import JUDGMENTS
from ..judging.spec import fitted_models, parse_judge_spec
from ..judging.verdicts import load_replies
from ..retrieval.retriever import Retrieval
from .study import Study, System
from .systems import answers

# (system id, query id, sample) -> the features that moved the verdict most, said of the system's answer
# ("longer"), each with its share of the log-odds toward the system's answer winning
Reasons = dict[tuple[str, str, int], list[tuple[str, float]]]


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
    reasons: Reasons  # what moved each verdict (empty unless the judge is the fitted one)


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
        verdict_reasons(study, systems),
    )


def verdict_reasons(study: Study, systems: Sequence[System]) -> Reasons:
    """What moved each of the study's verdicts: the three features the fitted judge's reply names (read
    from the order with the system's answer first, so each is said of the system's), in words. Empty for
    any other judge, whose replies name none."""
    spec = parse_judge_spec(study.judge)
    if spec.kind != "fitted":
        return {}
    models = fitted_models(spec.model)
    found: Reasons = {}
    for system in systems:
        path = system.run_dir / JUDGMENTS
        if not path.is_file():
            continue
        replies = load_replies(path).filter(
            (pl.col("order") == "system_first") & (pl.col("judge") == spec.label)
        )
        for qid, sample, raw in replies.select("query_id", "sample", "raw").iter_rows():
            found[(system.id, qid, sample)] = moved_in_words(raw or "", models)
    return found
