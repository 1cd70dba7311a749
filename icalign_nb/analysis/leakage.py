"""Pool/eval leakage: demonstrations that are near-duplicates of the query they were retrieved for.

A pool that holds the evaluation questions themselves (or close copies) lets a model answer by
copying a demonstration's answer, and a win rate measured so says nothing about alignment. For every
kept demo of a run, its prompt is compared with the query: lower-cased words, the share of the
shorter text's distinct words found in the longer one (containment), and Jaccard overlap of the
two word sets. A demo is a near-duplicate when its containment is at least `CONTAINMENT` and the
shorter text has at least `MIN_WORDS` words, or its Jaccard overlap is at least `JACCARD`.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..data.loaders import load_pool
from ..data.records import parse_field_map
from ..generation.rundir import read_config, read_retrievals

CONTAINMENT = 0.9
JACCARD = 0.8
MIN_WORDS = 6
_WORD = re.compile(r"\w+")
LEAK_SCHEMA = {
    "query_id": pl.String,
    "sample": pl.Int64,
    "demo_id": pl.String,
    "containment": pl.Float64,
    "jaccard": pl.Float64,
    "query": pl.String,
    "demo_prompt": pl.String,
}


def overlap(a: str, b: str) -> tuple[float, float, int]:
    """(containment, Jaccard, words of the shorter) of two texts' distinct lower-cased words."""
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    if not wa or not wb:
        return 0.0, 0.0, 0
    shared = len(wa & wb)
    return shared / min(len(wa), len(wb)), shared / len(wa | wb), min(len(wa), len(wb))


def near_duplicate(query: str, demo: str) -> bool:
    """Whether a demo prompt is a near-duplicate of the query (see the module's rule)."""
    contained, jaccard, shorter = overlap(query, demo)
    return (contained >= CONTAINMENT and shorter >= MIN_WORDS) or jaccard >= JACCARD


def leaked_demos(run_dir: str | Path, data_dir: str | None = None) -> pl.DataFrame:
    """The kept demos of a run that are near-duplicates of their query, one row each (empty: no leak)."""
    config = read_config(run_dir)["identity"]["retrieval"]
    pool = load_pool(config["pool"], data_dir, parse_field_map(config.get("fields")))
    prompts = dict(zip(pool["id"], pool["prompt"], strict=True))
    rows = []
    for (query_id, sample), retrieval in read_retrievals(run_dir).items():
        for demo in retrieval.demo_ids:
            text = prompts.get(demo)
            if text is None or not near_duplicate(retrieval.query, text):
                continue
            contained, jaccard, _ = overlap(retrieval.query, text)
            rows.append(
                {
                    "query_id": query_id,
                    "sample": sample,
                    "demo_id": demo,
                    "containment": contained,
                    "jaccard": jaccard,
                    "query": retrieval.query,
                    "demo_prompt": text,
                }
            )
    return pl.DataFrame(rows, schema=LEAK_SCHEMA)


def pool_leaks(pool: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    """Every (pool demo, eval query) pair that is a near-duplicate, before any retrieval: what a pool
    would leak to an eval set. Columns: demo_id, query_id, containment, jaccard, query, demo_prompt."""
    words = [(i, p, set(_WORD.findall(p.lower()))) for i, p in zip(pool["id"], pool["prompt"], strict=True)]
    rows = []
    for qid, query in zip(queries["id"], queries["prompt"], strict=True):
        qwords = set(_WORD.findall(query.lower()))
        for demo_id, prompt, dwords in words:
            if not qwords & dwords or not near_duplicate(query, prompt):
                continue
            contained, jaccard, _ = overlap(query, prompt)
            rows.append(
                {
                    "query_id": qid,
                    "sample": 0,
                    "demo_id": demo_id,
                    "containment": contained,
                    "jaccard": jaccard,
                    "query": query,
                    "demo_prompt": prompt,
                }
            )
    return pl.DataFrame(rows, schema=LEAK_SCHEMA)
