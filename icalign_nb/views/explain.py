"""Tables and HTML that explain retrieval choices and answers in notebooks (no plotting here)."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence

import polars as pl

from ..retrieval.retriever import Retrieval

EMPTY = "(empty answer: the model ended it at once)"


def retrieval_summary(retrievals: Sequence[Retrieval]) -> pl.DataFrame:
    """One row per query: demos kept, their tokens, scores, and why the others were left out."""
    rows = []
    for r in retrievals:
        reasons = Counter(c.reason for c in r.candidates)
        kept = [c for c in r.candidates if c.kept]
        scores = [c.score for c in kept if c.score is not None]
        rows.append(
            {
                "query_id": r.query_id,
                "query": r.query,
                "demos_kept": len(r.demo_ids),
                "kept_tokens": sum(c.n_tokens for c in kept),
                "budget": r.budget,
                "top_score": max(scores) if scores else None,
                "mean_kept_score": sum(scores) / len(scores) if scores else None,
                "over_instance_limit": reasons.get("over_instance_limit", 0),
                "over_budget": reasons.get("over_budget", 0),
                "after_stop": reasons.get("after_stop", 0),
            }
        )
    return pl.DataFrame(rows)


def candidate_table(retrieval: Retrieval, pool: pl.DataFrame, width: int = 80) -> pl.DataFrame:
    """A query's candidates best first: rank, score, tokens, decision, and the demo's prompt."""
    prompts = dict(zip(pool["id"].to_list(), pool["prompt"].to_list(), strict=True))
    categories = dict(zip(pool["id"].to_list(), pool["category"].to_list(), strict=True))
    return pl.DataFrame(
        [
            {
                "rank": c.rank,
                "score": None if c.score is None else round(c.score, 3),
                "tokens": c.n_tokens,
                "decision": c.reason,
                "category": categories.get(c.id, ""),
                "demo prompt": cut(prompts.get(c.id, ""), width),
            }
            for c in retrieval.candidates
        ]
    )


def pick_examples(retrievals: Sequence[Retrieval], n: int = 2) -> list[Retrieval]:
    """Queries worth showing: one where a demo was skipped for length, then the fewest and most kept."""
    if not retrievals:
        return []
    chosen: list[Retrieval] = []
    skipped = [r for r in retrievals if any(c.reason == "over_instance_limit" for c in r.candidates)]
    by_count = sorted(retrievals, key=lambda r: len(r.demo_ids))
    for r in [*skipped[:1], by_count[0], by_count[-1], *retrievals]:
        if len(chosen) >= n:
            break
        if r not in chosen:
            chosen.append(r)
    return chosen


def prompt_excerpt(prompt: str, head: int = 600, tail: int = 700) -> str:
    """The start and the end of a long prompt, with how much was left out in between."""
    if len(prompt) <= head + tail + 80:
        return prompt
    left_out = len(prompt) - head - tail
    return f"{prompt[:head]}\n\n[… {left_out} characters left out …]\n\n{prompt[-tail:]}"


def side_by_side(columns: dict[str, str], title: str | None = None) -> str:
    """HTML of texts in equal columns (e.g. a direct answer beside an in-context one)."""
    td = f"vertical-align:top;padding:8px;border:1px solid #ccc;width:{100 // max(1, len(columns))}%"
    pre = "white-space:pre-wrap;font-size:90%"
    cells = "".join(
        f"<td style='{td}'><b>{html.escape(name)}</b>"
        f"<pre style='{pre}'>{html.escape(text or EMPTY)}</pre></td>"
        for name, text in columns.items()
    )
    caption = f"<caption style='text-align:left'><b>{html.escape(title)}</b></caption>" if title else ""
    return f"<table style='table-layout:fixed;width:100%'>{caption}<tr>{cells}</tr></table>"


def cut(text: str, width: int) -> str:
    """One line, at most `width` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
