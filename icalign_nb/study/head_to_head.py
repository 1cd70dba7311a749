"""Head to head in a study: one system's answers judged directly against another's on the same (query,
sample), in both orders, by the study's judge and cached like any judgment — in-context against
zero-shot (what the demos change, which a win rate against a strong baseline cannot show) and the chat
model against in-context."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from ..analysis.head_to_head import head_to_head, judge_head_to_head
from ..analysis.winrates import Bootstrap
from ..judging.spec import parse_judge_spec
from .study import Study, System
from .summary import IN_CONTEXT, ZERO_SHOT

HEAD_TO_HEAD_SCHEMA = {
    "system_a": pl.String,
    "label_a": pl.String,
    "system_b": pl.String,
    "label_b": pl.String,
    "judge": pl.String,
    "prompts": pl.Int64,
    "n": pl.Int64,
    "win": pl.Float64,
    "draw": pl.Float64,
    "lose": pl.Float64,
    "win_ci_low": pl.Float64,
    "win_ci_high": pl.Float64,
    "net": pl.Float64,
    "net_ci_low": pl.Float64,
    "net_ci_high": pl.Float64,
}


def head_to_head_pairs(study: Study, systems: Sequence[System]) -> list[tuple[System, System]]:
    """The pairs the study compares directly, (A, B): in-context against zero-shot, then the chat model
    against in-context; those whose two systems are both among `systems`."""
    by_id = {s.id: s for s in systems}
    chat = study.chat_system()
    wanted = [(IN_CONTEXT, ZERO_SHOT), *([(chat.id, IN_CONTEXT)] if chat is not None else [])]
    return [(by_id[a], by_id[b]) for a, b in wanted if a in by_id and b in by_id]


def head_to_heads(study: Study, systems: Sequence[System], boot: Bootstrap) -> pl.DataFrame:
    """Each pair's head to head (cached): A's win, draw and lose shares against B and the net preference
    (win - lose), with intervals that resample prompts (the items are paired), one row per pair
    (`HEAD_TO_HEAD_SCHEMA`: ids and labels of A and B, the judge, counts and shares)."""
    spec = parse_judge_spec(study.judge)
    rows = []
    for a, b in head_to_head_pairs(study, systems):
        verdicts = judge_head_to_head(a.run_dir, b.run_dir, spec, study.data_dir, study.reference)
        row = {**head_to_head(verdicts, boot), "system_a": a.id, "label_a": a.label}
        rows.append(row | {"system_b": b.id, "label_b": b.label})
        print(
            f"head to head, {a.label} against {b.label}: wins {100 * row['win']:.1f}%, loses "
            f"{100 * row['lose']:.1f}% of {row['n']} items; net {100 * row['net']:+.1f} points"
        )
    return pl.DataFrame(rows, schema=HEAD_TO_HEAD_SCHEMA)
