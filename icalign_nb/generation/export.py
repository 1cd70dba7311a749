"""Exporting a finished run in the paper's format (`prompt`, `response_list`) or AlpacaEval's."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from ..errors import UserError
from ..files import atomic_write_text, write_jsonl
from .rundir import check_complete, generations_frame, read_config


def _ordered(frame: pl.DataFrame, query_ids: Iterable[str]) -> list[tuple[str, pl.DataFrame]]:
    """Per-query groups in the eval set's order (as recorded), samples ascending."""
    groups = {k[0]: g.sort("sample") for k, g in frame.group_by("query_id")}
    order = [q for q in query_ids if q in groups]
    order += sorted((q for q in groups if q not in set(order)), key=_natural)
    return [(q, groups[q]) for q in order]


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def export_run(
    run_dir: str | Path, fmt: str, out: str | Path, generator: str | None = None, sample: int = 0
) -> int:
    """Write a finished run as the paper's JSON Lines (`prompt`, `response_list`) or AlpacaEval's JSON."""
    path = Path(run_dir).expanduser()
    config = read_config(path)
    frame = generations_frame(path)
    identity = config["identity"]
    check_complete(path, frame.height, "export")
    groups = _ordered(frame, config.get("query_ids", []))
    if fmt == "paper":
        write_jsonl(
            Path(out),
            [{"prompt": g["query"][0], "response_list": g["response"].to_list()} for _, g in groups],
        )
    elif fmt == "alpaca_eval":
        name = generator or f"{identity['model']}_{identity['retrieval']['preset']}"
        rows = []
        for qid, g in groups:
            picked = g.filter(pl.col("sample") == sample)
            if picked.height == 0:
                raise UserError(f"query {qid} has no sample {sample} in run {path}")
            rows.append({"instruction": g["query"][0], "output": picked["response"][0], "generator": name})
        atomic_write_text(Path(out), json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    else:
        raise UserError(f"unknown export format '{fmt}' (paper, alpaca_eval)")
    return len(groups)
