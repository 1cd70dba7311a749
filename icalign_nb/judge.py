"""Judging a run against a baseline: comparisons, cached replies, verdicts, `DIR/judgments.jsonl`.

**Position swap** (`--swap`): every (query, sample) is judged twice, the system as Assistant 1
(`order` = `system_first`, the paper's order) and as Assistant 2 (`baseline_first`); scores are
always stored as (system, baseline). The two orders are combined by this rule
(`icalign_nb.analysis.combine_orders`): the common verdict when both orders agree; a **draw**
when they disagree (any disagreement, including win vs draw, is position bias, not preference); the one valid
order's verdict when the other is invalid; `invalid` when both are. Combined scores are the mean
over the valid orders. How often the two orders agree is reported (`swap_agreement`).

The verdict of one judgment: win if score_system - score_baseline > margin, lose if < -margin,
else draw; margin is 0 for LLM judges (the paper's rule) and the draw margin of the embedding judge.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .data import load_baseline, load_release_judgments
from .errors import UserError, where
from .files import atomic_write_json, iter_jsonl, sha256_text, write_jsonl
from .judges.cache import ORDERS, Comparison, JudgmentCache, Reply
from .judges.parse import parse_scores, verdict
from .judges.spec import JudgeSpec
from .retry import RetryPolicy

GENERATION_FIELDS = ("query_id", "sample", "query", "response")


@dataclass
class JudgeRun:
    """What `icalign judge` does: which run, against which baseline, with which judge and how."""

    run_dir: Path
    baseline: str
    judge: JudgeSpec
    swap: bool = False
    concurrency: int = 8
    reference: str | None = None  # answers the embedding judge compares against (baseline spec or file)
    out: Path | None = None  # default: DIR/judgments.jsonl
    cache_root: Path | None = None  # default: the user cache
    data_dir: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass
class JudgeSummary:
    """Counts of one judging run."""

    judge: str
    total: int
    cached: int
    requested: int
    verdicts: dict[str, int]
    swap_pairs: int = 0
    swap_agree: int = 0
    out: Path | None = None


# ---------------------------------------------------------------- inputs


def read_generations(run_dir: Path) -> list[dict]:
    """Rows of `DIR/generations.jsonl`, each checked for the fields judging needs."""
    path = Path(run_dir) / "generations.jsonl"
    if not path.exists():
        raise UserError(f"{path}: not found (is {run_dir} a run directory written by `icalign generate`?)")
    rows = []
    for lineno, obj in iter_jsonl(path):
        for name in GENERATION_FIELDS:
            if name not in obj or obj[name] is None:
                raise UserError(f"{where(path, lineno, name)} is missing")
        if not isinstance(obj["sample"], int):
            raise UserError(f"{where(path, lineno, 'sample')} must be an integer")
        for name in ("query_id", "query", "response"):
            if not isinstance(obj[name], str):
                raise UserError(f"{where(path, lineno, name)} must be a string")
        rows.append({**obj, "_loc": where(path, lineno)})
    if not rows:
        raise UserError(f"{path}: no generations")
    return rows


def answers_by_query(answers: pl.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """Answer lookup tables: by stripped prompt text, and by id."""
    by_prompt = {p.strip(): r for p, r in zip(answers["prompt"], answers["response"], strict=True)}
    by_id = dict(zip(answers["id"], answers["response"], strict=True))
    return by_prompt, by_id


def _match(row: dict, tables: tuple[dict[str, str], dict[str, str]], what: str) -> str:
    by_prompt, by_id = tables
    found = by_prompt.get(row["query"].strip(), by_id.get(row["query_id"]))
    if found is None:
        raise UserError(
            f"{row['_loc']}: field 'query': no {what} answer for query {row['query_id']} "
            "(matched by prompt text, then by id)"
        )
    return found


def build_comparisons(
    rows: Sequence[dict], baseline: pl.DataFrame, reference: pl.DataFrame | None = None, swap: bool = False
) -> list[Comparison]:
    """Comparisons for generation rows: system-first, and baseline-first too when swapping."""
    base = answers_by_query(baseline)
    ref = answers_by_query(reference) if reference is not None else None
    out = []
    for row in rows:
        base_answer = _match(row, base, "baseline")
        ref_answer = _match(row, ref, "reference") if ref is not None else None
        for order in ORDERS if swap else ORDERS[:1]:
            out.append(
                Comparison(
                    row["query_id"],
                    row["sample"],
                    order,
                    row["query"],
                    row["response"],
                    base_answer,
                    ref_answer,
                )
            )
    return out


def eval_references(name: str, data_dir: str | None = None) -> pl.DataFrame | None:
    """An eval set's reference answers as ``id, prompt, response``, or None when it has none."""
    from .data import load_eval

    refs = load_eval(name, data_dir).filter(pl.col("reference").is_not_null())
    if refs.is_empty():
        return None
    return refs.select("id", "prompt", pl.col("reference").alias("response"))


def run_eval_name(run_dir: Path) -> str | None:
    """The eval set a run was generated from (its config.json), if recorded."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{where(path, exc.lineno)}: malformed JSON ({exc.msg})") from None
    identity = config.get("identity", config) if isinstance(config, dict) else {}
    name = identity.get("eval") if isinstance(identity, dict) else None
    return name if isinstance(name, str) else None


def reference_answers(run: JudgeRun) -> pl.DataFrame | None:
    """Reference answers: `--reference` (a baseline spec, or eval:NAME), else the run's eval set's."""
    if run.reference:
        if run.reference.startswith("eval:"):
            return eval_references(run.reference.removeprefix("eval:"), run.data_dir)
        return load_baseline(run.reference, run.data_dir)
    if run.judge.kind != "embedding":
        return None
    name = run_eval_name(run.run_dir)
    return eval_references(name, run.data_dir) if name else None


# ---------------------------------------------------------------- backends


@dataclass
class RecordedJudge:
    """The paper release's recorded GPT-4 replies, looked up by (query id, sample)."""

    spec: JudgeSpec
    _replies: dict[tuple[str, int], str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        table = load_release_judgments(self.spec.model)
        self._replies = {(q, s): r for q, s, r in table.iter_rows()}

    def prompt_hash(self, c: Comparison) -> str:
        """Recorded replies are identified by position in the release, not by prompt."""
        return sha256_text(c.query_id, str(c.sample), c.order)

    def judge(self, items: Sequence[Comparison], done: object) -> None:
        """Look replies up; swapped orders and missing items have no recorded reply (invalid)."""
        for i, c in enumerate(items):
            raw = self._replies.get((c.query_id, c.sample)) if c.order == "system_first" else None
            if raw is None:
                done(i, Reply(f"[no recorded judgment for {c.query_id} sample {c.sample} {c.order}]", None))
            else:
                done(i, Reply(raw, parse_scores(raw)))


def make_backend(run: JudgeRun) -> object:
    """The backend object for a judge spec (`judge`, `prompt_hash`)."""
    spec = run.judge
    if spec.kind == "recorded":
        return RecordedJudge(spec)
    if spec.kind == "embedding":
        from .judges.embedding import EmbeddingJudge

        return EmbeddingJudge(spec, run.cache_root)
    from .judges.prompts import get_prompt

    prompt = get_prompt(spec.prompt, run.data_dir)
    if spec.kind == "openai":
        from .judges.openai_chat import OpenAIJudge

        return OpenAIJudge(spec, prompt, concurrency=run.concurrency, retry=run.retry)
    from .judges.local import LocalJudge

    return LocalJudge(spec, prompt)


# ---------------------------------------------------------------- judging


def judgment_row(c: Comparison, reply: Reply, spec: JudgeSpec, baseline: str) -> dict:
    """The `judgments.jsonl` record of one comparison (scores mapped back to system/baseline)."""
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
    }


def judge_comparisons(
    comparisons: Sequence[Comparison], backend: object, cache: JudgmentCache
) -> tuple[list[Reply], int]:
    """Replies for all comparisons, in input order; only uncached ones reach the backend."""
    keys = [cache.key(backend.prompt_hash(c)) for c in comparisons]
    replies: list[Reply | None] = [cache.get(k) for k in keys]
    pending = [i for i, r in enumerate(replies) if r is None]
    # The same prompt twice (e.g. identical samples) is asked once.
    first: dict[str, int] = {}
    for i in pending:
        first.setdefault(keys[i], i)
    todo = list(first.values())

    def done(index: int, reply: Reply) -> None:
        target = todo[index]
        cache.put(keys[target], reply)
        replies[target] = reply

    backend.judge([comparisons[i] for i in todo], done)
    for i in pending:
        if replies[i] is None:
            replies[i] = replies[first[keys[i]]]
    missing = [comparisons[i] for i, r in enumerate(replies) if r is None]
    if missing:
        raise RuntimeError(f"judge returned no reply for {len(missing)} comparison(s)")
    return replies, len(todo)


def swap_agreement(rows: Sequence[dict]) -> tuple[int, int]:
    """(pairs judged validly in both orders, pairs whose two verdicts agree)."""
    by_item: dict[tuple, dict[str, str]] = {}
    for r in rows:
        by_item.setdefault((r["query_id"], r["sample"]), {})[r["order"]] = r["verdict"]
    pairs = [v for v in by_item.values() if len(v) == 2 and "invalid" not in v.values()]
    return len(pairs), sum(1 for v in pairs if len(set(v.values())) == 1)


def run_judge(run: JudgeRun) -> JudgeSummary:
    """Judge a run directory and write its judgments file atomically; return the counts."""
    rows = read_generations(run.run_dir)
    baseline = load_baseline(run.baseline, run.data_dir)
    reference = reference_answers(run)
    if run.judge.kind == "embedding" and reference is None:
        raise UserError(
            "--judge embedding needs --reference (answers to compare against, e.g. chatgpt, or eval:NAME "
            "for an eval set's references); the run's eval set has none"
        )
    comparisons = build_comparisons(rows, baseline, reference, run.swap)
    backend = make_backend(run)
    cache = JudgmentCache(run.judge.key, run.cache_root)
    replies, requested = judge_comparisons(comparisons, backend, cache)
    out_rows = [
        judgment_row(c, r, run.judge, run.baseline) for c, r in zip(comparisons, replies, strict=True)
    ]
    out = run.out or Path(run.run_dir) / "judgments.jsonl"
    write_jsonl(out, out_rows)
    atomic_write_json(
        out.with_name(out.stem + ".judge.json"),
        {"judge": run.judge.name, "proxy": run.judge.proxy, "baseline": run.baseline, "swap": run.swap},
    )
    counts = {v: sum(1 for r in out_rows if r["verdict"] == v) for v in ("win", "draw", "lose", "invalid")}
    pairs, agree = swap_agreement(out_rows) if run.swap else (0, 0)
    return JudgeSummary(
        run.judge.label, len(comparisons), len(comparisons) - requested, requested, counts, pairs, agree, out
    )


def print_summary(summary: JudgeSummary, stream: object = sys.stdout) -> None:
    """One short report of a judging run."""
    counts = " ".join(f"{k}={v}" for k, v in summary.verdicts.items())
    print(
        f"judged {summary.total} comparison(s) with {summary.judge}: {summary.requested} new, "
        f"{summary.cached} from cache; {counts}; wrote {summary.out}",
        file=stream,
    )
    if summary.swap_pairs:
        share = summary.swap_agree / summary.swap_pairs
        print(
            f"position swap: the two orders agree on {summary.swap_agree}/{summary.swap_pairs} "
            f"({share:.1%}); disagreements count as draws",
            file=stream,
        )


def judgment_rows_frame(
    comparisons: Sequence[Comparison],
    backend: object,
    cache: JudgmentCache,
    spec: JudgeSpec,
    system: str,
    baseline: str,
) -> pl.DataFrame:
    """Judge comparisons (cached) and return their verdicts as an analysis table for `system`."""
    from .judgments import SCHEMA

    replies, _ = judge_comparisons(comparisons, backend, cache)
    rows = [judgment_row(c, r, spec, baseline) for c, r in zip(comparisons, replies, strict=True)]
    return pl.DataFrame(
        [{**{k: r[k] for k in SCHEMA if k in r}, "system": system, "judge": spec.label} for r in rows],
        schema=SCHEMA,
    )
