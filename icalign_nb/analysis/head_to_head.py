"""Head to head: one system's answers judged against another's on the same (query, sample).

Against a strong baseline a small model loses nearly everything whatever its prompt, so a win rate
against the baseline cannot show what the demonstrations change. Judging system A's answers
directly against system B's (both orders, `icalign judge --run A --baseline run:B`) can: `win` is
the share of (query, sample) items on which A's answer won, `lose` B's, and `net` = win - lose
(0: no preference). Items are paired by construction, so the 95% intervals resample prompts (every
sample of a prompt moves together) — a paired interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import UserError
from ..judging.run import RUN_PREFIX, JudgeRun, run_judge
from ..judging.spec import JudgeSpec
from ..judging.verdicts import load_judgments_file
from .winrates import Bootstrap, combine_orders

HEAD_TO_HEAD_COLUMNS = ["system_a", "system_b", "judge", "prompts", "n", "win", "draw", "lose", "net"]


def head_to_head(verdicts: pl.DataFrame, boot: Bootstrap | None = None) -> dict:
    """A's win/draw/lose against B (the verdicts' system and baseline), and net preference with intervals."""
    boot = boot or Bootstrap()
    combined = combine_orders(verdicts).filter(pl.col("verdict") != "invalid")
    if combined.is_empty():
        raise UserError("head to head: no valid judgment to compare the two systems on")
    per = (
        combined.group_by("query_id")
        .agg(
            (pl.col("verdict") == "win").sum().alias("w"),
            (pl.col("verdict") == "lose").sum().alias("l"),
            pl.len().alias("n"),
        )
        .sort("query_id")
    )
    w, lo, n = (per[c].to_numpy().astype(float) for c in ("w", "l", "n"))
    rng = np.random.default_rng(boot.seed)
    idx = rng.integers(0, len(n), size=(boot.n, len(n)))
    tail = (1 - boot.level) / 2 * 100
    totals = n[idx].sum(1)
    win_s, net_s = w[idx].sum(1) / totals, (w[idx].sum(1) - lo[idx].sum(1)) / totals
    (win_low, win_high), (net_low, net_high) = (np.percentile(x, [tail, 100 - tail]) for x in (win_s, net_s))
    win, lose = w.sum() / n.sum(), lo.sum() / n.sum()
    draw = (n.sum() - w.sum() - lo.sum()) / n.sum()  # from the counts: no rounding left where none drew
    return {
        "system_a": combined["system"][0],
        "system_b": Path(combined["baseline"][0].removeprefix(RUN_PREFIX)).name,  # the run recorded by path
        "judge": combined["judge"][0],
        "prompts": len(n),
        "n": int(n.sum()),
        "win": float(win),
        "draw": float(draw),
        "lose": float(lose),
        "win_ci_low": float(win_low),
        "win_ci_high": float(win_high),
        "net": float(win - lose),
        "net_ci_low": float(net_low),
        "net_ci_high": float(net_high),
    }


def judge_head_to_head(
    run_a: Path, run_b: Path, judge: JudgeSpec, data_dir: str | None = None, reference: str | None = None
) -> pl.DataFrame:
    """Judge run A's answers against run B's (both orders) into A's `judgments.vs-<B>.jsonl`; its verdicts.
    `reference`: the reference answers of a judge that reads them (default: A's eval set's own)."""
    run = JudgeRun(
        Path(run_a), RUN_PREFIX + str(run_b), judge, swap=True, reference=reference, data_dir=data_dir
    )
    summary = run_judge(run)
    return load_judgments_file(summary.out, Path(run_a).name)


def head_to_head_table(
    pairs: Sequence[tuple[Path, Path]],
    judge: JudgeSpec,
    boot: Bootstrap | None = None,
    data_dir: str | None = None,
) -> pl.DataFrame:
    """Head to head of each (A, B) pair of run directories, one row each (e.g. in-context vs zero-shot,
    the chat model vs in-context)."""
    return pl.DataFrame([head_to_head(judge_head_to_head(a, b, judge, data_dir), boot) for a, b in pairs])
