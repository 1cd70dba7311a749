"""Length-controlled win rates: how often a system would win if its answers were as long as the baseline's.

Judges, GPT-4 included, tend to prefer longer answers. Following AlpacaEval 2's length control, per
system we fit a logistic regression of the verdict on the answer-length difference,

    P(win) = sigmoid(theta + phi * tanh(delta / sd(delta))),

where delta is the system's answer length minus the baseline's (characters) and sd its standard
deviation over that system's comparisons, and report sigmoid(theta): the predicted win rate at equal
lengths. The outcome is win (1) or not (0), so the raw win rate it sits beside is the paper's (draws
are not wins). The 95% interval refits on bootstrap resamples of prompts. AlpacaEval's full model
also has a term for each instruction's difficulty; with one system and one baseline per fit, that
term is absent here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..data.loaders import load_baseline
from ..data.release import beside, load_release_outputs, outputs_name, release_names
from ..errors import UserError
from ..files import frame_digest
from ..generation.rundir import GENERATIONS, read_generations
from ..judging.comparisons import answers_by_query
from .winrates import KEYS, Bootstrap, combine_orders

LC_COLUMNS = ["lc_win", "lc_ci_low", "lc_ci_high", "length_slope", "mean_length_diff"]


def answer_lengths(
    source: str | Path, baseline: str, data_dir: str | None = None, baseline_sha256: str | None = None
) -> pl.DataFrame:
    """`query_id, sample, length_diff` (system minus baseline answer, characters) of a run directory (or
    its judgments file) or a release `*_autoeval.jsonl` (whose outputs and baseline answers sit beside it
    or are fetched, pinned); a baseline whose content hash was recorded with the verdicts must still have
    it."""
    path = Path(source)
    if path.name.endswith("_autoeval.jsonl"):
        system, name = release_names(path)
        outputs = load_release_outputs(beside(path, outputs_name(system), data_dir))
        rows = [
            dict(zip(("query_id", "sample", "query", "response"), r, strict=True))
            for r in outputs.iter_rows()
        ]
        for r in rows:
            r["_loc"] = str(path)
        answers = load_baseline(beside(path, f"{name}_results.jsonl", data_dir))
    else:
        run_dir = path if path.is_dir() else path.parent
        if not (run_dir / GENERATIONS).is_file():
            raise UserError(f"{path}: no answers beside it ({GENERATIONS}) to measure their lengths")
        rows = read_generations(run_dir)
        answers = load_baseline(baseline, data_dir)
        if baseline_sha256 and frame_digest(answers, ("prompt", "response")) != baseline_sha256:
            raise UserError(
                f"baseline {baseline}: its answers changed since {path} was judged against them "
                "(content hash differs); judge again, or restore them"
            )
    by_prompt, by_id = answers_by_query(answers)
    out = []
    for r in rows:
        base = by_prompt.get(r["query"].strip(), by_id.get(r["query_id"]))
        if base is None:
            raise UserError(
                f"{r['_loc']}: no baseline answer for query {r['query_id']} to measure lengths against"
            )
        out.append(
            {"query_id": r["query_id"], "sample": r["sample"], "length_diff": len(r["response"]) - len(base)}
        )
    return pl.DataFrame(out, schema={"query_id": pl.String, "sample": pl.Int64, "length_diff": pl.Int64})


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-4, steps: int = 50) -> tuple[float, float]:
    """(theta, phi) of P(y=1) = sigmoid(theta + phi x) by Newton's method, with a tiny ridge so that
    a system that always (or never) wins still gets a finite fit."""
    design = np.stack([np.ones_like(x), x], axis=1)
    beta = np.zeros(2)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(design @ beta)))
        grad = design.T @ (y - p) - ridge * beta
        hess = design.T @ (design * (p * (1 - p))[:, None]) + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return float(beta[0]), float(beta[1])


def length_controlled(verdicts: pl.DataFrame, lengths: pl.DataFrame, boot: Bootstrap | None = None) -> dict:
    """The length-controlled win rate of one system's verdicts (see the module text), with its CI."""
    boot = boot or Bootstrap()
    table = (
        combine_orders(verdicts)
        .filter(pl.col("verdict") != "invalid")
        .join(lengths, on=["query_id", "sample"])
    )
    if table.is_empty():
        return dict.fromkeys(LC_COLUMNS)
    delta = table["length_diff"].to_numpy().astype(float)
    scale = delta.std() or 1.0
    x, y = np.tanh(delta / scale), (table["verdict"] == "win").to_numpy().astype(float)
    theta, phi = fit_logistic(x, y)
    prompts = table["query_id"].to_numpy()
    unique, index = np.unique(prompts, return_inverse=True)
    members = [np.flatnonzero(index == i) for i in range(len(unique))]
    rng = np.random.default_rng(boot.seed)
    fits = []
    for _ in range(boot.n):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])
        fits.append(fit_logistic(x[rows], y[rows])[0])
    tail = (1 - boot.level) / 2 * 100
    low, high = np.percentile(1 / (1 + np.exp(-np.array(fits))), [tail, 100 - tail]) if fits else (None, None)
    return {
        "lc_win": float(1 / (1 + np.exp(-theta))),
        "lc_ci_low": None if low is None else float(low),
        "lc_ci_high": None if high is None else float(high),
        "length_slope": phi,
        "mean_length_diff": float(delta.mean()),
    }


def with_length_control(
    table: pl.DataFrame,
    verdicts: pl.DataFrame,
    lengths: dict[str, pl.DataFrame],
    boot: Bootstrap | None = None,
) -> pl.DataFrame:
    """A win-rate table with the length-controlled columns added; `lengths` maps a system to its
    `answer_lengths` (systems without lengths get nulls)."""
    rows = []
    for row in table.iter_rows(named=True):
        part = verdicts.filter(*(pl.col(k) == row[k] for k in KEYS))
        known = lengths.get(row["system"])
        rows.append(
            {
                **row,
                **(length_controlled(part, known, boot) if known is not None else dict.fromkeys(LC_COLUMNS)),
            }
        )
    schema = {**table.schema, **dict.fromkeys(LC_COLUMNS, pl.Float64)}
    return pl.DataFrame(rows, schema=schema)
