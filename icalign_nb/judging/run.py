"""Judging a run against a baseline: comparisons, cached replies, verdicts, `DIR/judgments.jsonl`.

**Position swap** (`--swap`): every (query, sample) is judged twice, the system as Assistant 1
(`order` = `system_first`, the paper's order) and as Assistant 2 (`baseline_first`); scores are
always stored as (system, baseline). The two orders are combined by this rule
(`icalign_nb.analysis.winrates.combine_orders`): the common verdict when both orders agree; a **draw**
when they disagree (any disagreement, including win vs draw, is position bias, not preference); the one valid
order's verdict when the other is invalid; `invalid` when both are. Combined scores are the mean
over the valid orders. How often the two orders agree is reported (`swap_agreement`).

The verdict of one judgment: win if score_system - score_baseline > margin, lose if < -margin,
else draw; margin is 0 for LLM judges (the paper's rule) and the draw margin of the embedding judge.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import polars as pl

from ..checks import in_range
from ..data.loaders import BUILTIN_BASELINES, load_baseline, load_eval, source_path
from ..errors import UserError
from ..files import atomic_write_json, exclusive, frame_digest, output_target, write_jsonl
from ..generation.rundir import (
    CONFIG,
    GENERATIONS,
    check_complete,
    check_output,
    read_config,
    read_generations,
)
from ..generation.runs import recorded_identity
from ..retrieval.settings import RetrievalSettings, load_queries
from .backends import Judge, make_judge
from .cache import JudgmentCache
from .comparisons import Comparison, Reply, build_comparisons
from .parse import verdict
from .spec import JudgeSpec
from .verdicts import JUDGMENTS, SCHEMA, answer_digest

JUDGE_INFO = "judgments.judge.json"


RUN_PREFIX = "run:"  # a baseline that is another run's answers: head to head


def baseline_name(spec: str) -> str:
    """The name verdicts carry for a baseline, its identity wherever they are read: a built-in name as it
    is, a file by its absolute path, another run as `run:` and its absolute path (never a folder's name,
    which two runs may share)."""
    if spec.startswith(RUN_PREFIX):
        return RUN_PREFIX + str(Path(spec.removeprefix(RUN_PREFIX)).expanduser().resolve())
    return spec if spec in BUILTIN_BASELINES else str(Path(spec).expanduser().resolve())


@dataclass
class JudgeRun:
    """What `icalign judge` does: which run, against which baseline, with which judge and how."""

    run_dir: Path
    baseline: str
    judge: JudgeSpec
    swap: bool = False
    concurrency: int = 8
    reference: str | None = None  # answers the embedding judge compares against (baseline spec or file)
    out: Path | None = None  # default: DIR/judgments.jsonl (head to head: DIR/judgments.vs-<run id>.jsonl)
    data_dir: str | None = None
    max_retries: int = 6  # endpoint judges: retries per request
    timeout: float = 120.0  # endpoint judges: seconds per request
    progress: bool = False  # a progress bar of the comparisons asked

    def __post_init__(self) -> None:
        in_range("concurrency", self.concurrency, at_least=1, whole=True)
        in_range("max_retries", self.max_retries, at_least=0, whole=True)
        in_range("timeout", self.timeout, above=0)

    def target(self) -> Path:
        """The judgments file written: `out`, else the run's own (or its head-to-head one)."""
        if self.out is not None:
            return Path(self.out)
        if self.baseline.startswith(RUN_PREFIX):
            return (
                Path(self.run_dir)
                / f"judgments.vs-{Path(baseline_name(self.baseline).removeprefix(RUN_PREFIX)).name}.jsonl"
            )
        return Path(self.run_dir) / JUDGMENTS

    def backend(self) -> Judge:
        """The judge backend this run uses."""
        return make_judge(self.judge, self.data_dir, self.concurrency, self.max_retries, self.timeout)


@dataclass
class JudgeSummary:
    """Counts of one judging run."""

    judge: str
    total: int
    cached: int
    requested: int
    verdicts: dict[str, int]
    out: Path | None = None
    rows: list[dict] = field(default_factory=list, repr=False)  # the verdicts written

    def frame(self, system: str) -> pl.DataFrame:
        """The verdicts written, as an analysis table for `system` (never read back: the output may be a
        device or a pipe)."""
        return pl.DataFrame([{**r, "system": system} for r in self.rows], schema=SCHEMA)


def load_baseline_answers(spec: str, data_dir: str | None = None) -> pl.DataFrame:
    """Baseline answers: built-in or file (one per query), or `run:DIR` (another run's, per sample)."""
    if not spec.startswith(RUN_PREFIX):
        return load_baseline(spec, data_dir)
    rows = read_generations(Path(spec.removeprefix(RUN_PREFIX)))
    return pl.DataFrame(
        [
            {"id": r["query_id"], "prompt": r["query"], "sample": r["sample"], "response": r["response"]}
            for r in rows
        ],
        schema={"id": pl.String, "prompt": pl.String, "sample": pl.Int64, "response": pl.String},
    )


def eval_references(name: str, data_dir: str | None = None) -> pl.DataFrame | None:
    """An eval set's reference answers as ``id, prompt, response``, or None when it has none."""
    refs = load_eval(name, data_dir).filter(pl.col("reference").is_not_null())
    if refs.is_empty():
        return None
    return refs.select("id", "prompt", pl.col("reference").alias("response"))


def reference_answers(run: JudgeRun) -> pl.DataFrame | None:
    """Reference answers: `--reference` (a baseline spec, or eval:NAME), else the run's eval set's."""
    if run.reference:
        if run.reference.startswith("eval:"):
            return eval_references(run.reference.removeprefix("eval:"), run.data_dir)
        return load_baseline(run.reference, run.data_dir)
    if run.judge.kind not in {"embedding", "fitted"}:
        return None
    if not (Path(run.run_dir) / CONFIG).exists():  # answers from elsewhere: no eval set to take them from
        return None
    config = read_config(run.run_dir)
    settings = RetrievalSettings(**recorded_identity(config)["retrieval"])
    queries = load_queries(settings, run.data_dir)
    recorded = config.get("inputs", {}).get("eval")
    if recorded and frame_digest(queries, ("id", "prompt")) != recorded:
        raise UserError(
            f"eval set '{settings.eval}' changed since run {run.run_dir} was generated from it: its "
            "reference answers are not the run's; restore it, or name the references (reference)"
        )
    refs = queries.filter(pl.col("reference").is_not_null())
    return None if refs.is_empty() else refs.select("id", "prompt", pl.col("reference").alias("response"))


def judge_inputs(run: JudgeRun) -> list[Path]:
    """The files a judging run reads: the answers, the baseline's and the references' (never written)."""
    if run.baseline.startswith(RUN_PREFIX):
        base = Path(run.baseline.removeprefix(RUN_PREFIX)).expanduser() / GENERATIONS
    else:
        base = source_path(run.baseline, "baseline", run.data_dir)
    found = [Path(run.run_dir) / GENERATIONS, base]
    if run.reference and run.reference.startswith("eval:"):
        found.append(source_path(run.reference.removeprefix("eval:"), "eval set", run.data_dir))
    elif run.reference:
        found.append(source_path(run.reference, "baseline", run.data_dir))
    elif run.judge.kind in {"embedding", "fitted"} and (Path(run.run_dir) / CONFIG).is_file():
        eval_name = read_config(run.run_dir)["identity"]["retrieval"]["eval"]
        found.append(source_path(eval_name, "eval set", run.data_dir))
    return found


# ---------------------------------------------------------------- judging


def judgment_row(
    c: Comparison, reply: Reply, spec: JudgeSpec, baseline: str, baseline_sha256: str | None = None
) -> dict:
    """The `judgments.jsonl` record of one comparison (scores mapped back to system/baseline), with the
    content hashes of the answer judged and of the baseline's answers, so that a reader can tell which
    answers a verdict is for."""
    s1, s2 = reply.scores if reply.scores else (None, None)
    system_score, baseline_score = (s1, s2) if c.order == "system_first" else (s2, s1)
    return {
        "query_id": c.query_id,
        "sample": c.sample,
        "order": c.order,
        "score_system": system_score,
        "score_baseline": baseline_score,
        "verdict": verdict(system_score, baseline_score, spec.margin),
        "raw": reply.raw,
        "judge": spec.label,
        "baseline": baseline,
        "baseline_sha256": baseline_sha256,
        "answer_sha256": answer_digest(c.system),
    }


def judge_comparisons(
    comparisons: Sequence[Comparison], backend: Judge, cache: JudgmentCache, progress: bool = False
) -> tuple[list[Reply], int]:
    """Replies for all comparisons, in input order; only uncached ones reach the backend."""
    from tqdm.auto import tqdm

    keys = [cache.key(backend.prompt_hash(c)) for c in comparisons]
    replies: list[Reply | None] = [cache.get(k) for k in keys]
    pending = [i for i, r in enumerate(replies) if r is None]
    # The same prompt twice (e.g. identical samples) is asked once.
    first: dict[str, int] = {}
    for i in pending:
        first.setdefault(keys[i], i)
    todo = list(first.values())
    bar = tqdm(
        total=len(todo), unit="comparison", desc="judge", file=sys.stderr, disable=not progress or not todo
    )

    def done(index: int, reply: Reply) -> None:
        target = todo[index]
        cache.put(keys[target], reply)
        replies[target] = reply
        bar.update(1)

    with bar:
        backend.judge([comparisons[i] for i in todo], done)
    for i in pending:
        if replies[i] is None:
            replies[i] = replies[first[keys[i]]]
    missing = [comparisons[i] for i, r in enumerate(replies) if r is None]
    if missing:
        raise RuntimeError(f"judge returned no reply for {len(missing)} comparison(s)")
    return replies, len(todo)


def run_judge(run: JudgeRun) -> JudgeSummary:
    """Judge a run directory and write its judgments file atomically; return the counts.

    The run directory is held while judging (one writer at a time); the output's place is checked
    before any request; a judge that fails stops before anything is rewritten, its replies so far
    kept in the cache."""
    owned = replace(run, out=None).target()
    out = run.target()
    check_output(out, judge_inputs(run), owns=[owned])
    with exclusive(Path(run.run_dir), "icalign judge"):
        rows = read_generations(run.run_dir)
        check_complete(run.run_dir, len(rows), "judge")
        baseline = load_baseline_answers(run.baseline, run.data_dir)
        named, digest = baseline_name(run.baseline), frame_digest(baseline, ("prompt", "response"))
        reference = reference_answers(run)
        if run.judge.kind == "embedding" and reference is None:
            raise UserError(
                "the embedding judge needs reference answers (reference: a baseline such as chatgpt, a file, "
                "or eval:NAME for an eval set's own); the run's eval set has none"
            )
        comparisons = build_comparisons(rows, baseline, reference, run.swap, run.judge.kind == "fitted")
        cache = JudgmentCache(run.judge.key)
        replies, requested = judge_comparisons(comparisons, run.backend(), cache, run.progress)
        out_rows = [
            judgment_row(c, r, run.judge, named, digest) for c, r in zip(comparisons, replies, strict=True)
        ]
        write_jsonl(out, out_rows)
        if output_target(out) == output_target(Path(run.run_dir) / JUDGMENTS):  # the run's verdicts' maker
            atomic_write_json(
                Path(run.run_dir) / JUDGE_INFO,
                {
                    "judge": run.judge.name,
                    "proxy": run.judge.proxy,
                    "baseline": named,
                    "baseline_sha256": digest,
                    "reference_sha256": frame_digest(reference, ("prompt", "response"))
                    if reference is not None
                    else None,
                    "swap": run.swap,
                },
            )
    counts = {v: sum(1 for r in out_rows if r["verdict"] == v) for v in ("win", "draw", "lose", "invalid")}
    return JudgeSummary(
        run.judge.label, len(comparisons), len(comparisons) - requested, requested, counts, out, out_rows
    )


def print_summary(summary: JudgeSummary, stream: TextIO | None = None) -> None:
    """One short report of a judging run."""
    counts = " ".join(f"{k}={v}" for k, v in summary.verdicts.items())
    print(
        f"judged {summary.total} comparison(s) with {summary.judge}: {summary.requested} new, "
        f"{summary.cached} from cache; {counts}; wrote {summary.out}",
        file=stream,
    )


def judgment_rows_frame(
    comparisons: Sequence[Comparison],
    backend: Judge,
    cache: JudgmentCache,
    spec: JudgeSpec,
    system: str,
    baseline: str,
) -> pl.DataFrame:
    """Judge comparisons (cached) and return their verdicts as an analysis table for `system`, each with
    the judge's raw reply (`raw`)."""
    replies, _ = judge_comparisons(comparisons, backend, cache)
    rows = [judgment_row(c, r, spec, baseline) for c, r in zip(comparisons, replies, strict=True)]
    return pl.DataFrame(
        [
            {**{k: r[k] for k in SCHEMA if k in r}, "system": system, "judge": spec.label, "raw": r["raw"]}
            for r in rows
        ],
        schema={**SCHEMA, "raw": pl.String},
    )
