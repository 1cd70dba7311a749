"""The systems compared side by side (zero-shot, retrieved demos, random demos, URIAL-style) as runs.

Each system is one resumable generation run under `<work_dir>/generations/<setup>/<preset>/`, where
`<setup>` names the model, data and a hash of every setting, so notebooks that share settings share
runs (a second notebook resumes a finished run instantly) and different settings never collide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import polars as pl

from ..analysis.breakdowns import run_features
from ..analysis.winrates import Bootstrap, headline_numbers, paired_comparison, swap_agreement, win_rates
from ..files import sha256_text
from ..generation.rundir import generations_frame
from ..generation.runs import RunOptions, RunSpec, run_generation
from ..generation.types import GenerationConfig
from ..judging.run import JudgeRun, print_summary, run_judge
from ..judging.spec import JudgeSpec, parse_judge_spec
from ..judging.verdicts import load_verdicts
from ..retrieval.settings import RetrievalSettings

LABELS = {
    "zero-shot": "zero-shot (direct prompt)",
    "paper": "in-context (retrieved demos)",
    "random": "in-context (random demos)",
    "urial": "URIAL-style (fixed 3 demos)",
    "paper-short": "in-context (retrieved, 1000-token budget)",
    "paper-cosine": "in-context (retrieved, cosine)",
    "chat": "instruction-tuned chat model (zero-shot)",
    **{f"paper-k{k}": f"in-context, at most {k} demo{'s' * (k != 1)}" for k in (0, 1, 2, 4, 8)},
    "paper-first": "in-context, most relevant first",
    "paper-shuffled-answers": "in-context, answers shuffled",
    "paper-questions-only": "in-context, questions only",
    "paper-answers-only": "in-context, answers only",
    "paper-format-only": "in-context, format only",
    "paper-system": "system text + in-context",
    "system-only": "system text, no demos",
}


@dataclass(frozen=True)
class SystemsSetup:
    """A run spec shared by every system, the presets that make the systems, and optionally an
    instruction-tuned chat model answering zero-shot through its chat template (the paper's
    Llama-2-chat row)."""

    base: RunSpec = field(default_factory=RunSpec)
    presets: tuple[str, ...] = ("zero-shot", "paper", "random", "urial")
    chat_model: str | None = None

    @classmethod
    def from_notebook(cls, params: Mapping[str, object]) -> SystemsSetup:
        """The setup a notebook's parameters describe, read by name: `model`, `backend`, `presets`
        (comma-separated), `chat_model`, any retrieval setting (`pool`, `eval`, `encoder`, `limit`, ...)
        and any generation setting (`samples`, `max_new_tokens`, `temperature`, `top_k`, `seed`, ...).
        A `seed` seeds both sampling and the random preset's draws; '' or 0 means "not set" for the
        optional retrieval settings (for `limit`: every query)."""
        seed = int(params.get("seed") or 0)
        retrieval = {
            f.name: params[f.name]
            for f in fields(RetrievalSettings)
            if f.name != "seed" and params.get(f.name) not in (None, "", 0)
        }
        generation = {
            f.name: params[f.name] for f in fields(GenerationConfig) if f.name in params and f.name != "seed"
        }
        base = RunSpec(
            model=str(params.get("model") or RunSpec.model),
            backend=str(params.get("backend") or RunSpec.backend),
            retrieval=RetrievalSettings(**retrieval, seed=seed),
            generation=GenerationConfig(**generation, seed=seed),
        )
        presets = tuple(p.strip() for p in str(params.get("presets") or "").split(",") if p.strip())
        return cls(base, presets or cls.presets, str(params.get("chat_model") or "") or None)

    def systems(self) -> dict[str, RunSpec]:
        """Every system's run spec, by key: the presets on the base model, then `chat` if there is one."""
        out = {preset: self.base.with_preset(preset) for preset in self.presets}
        if self.chat_model:
            chat = replace(self.base.retrieval, preset="zero-shot", tokenizer=None)
            out["chat"] = replace(self.base, model=self.chat_model, retrieval=chat)
        return out

    def folder(self, work_dir: str | Path) -> Path:
        """Where this setup's runs live: readable names plus a hash of every shared setting."""
        digest = sha256_text(repr(asdict(self.base.with_preset("-"))))[:10]
        r = self.base.retrieval
        name = "-".join(_slug(str(v)) for v in (self.base.model, r.pool, r.eval))
        return Path(work_dir) / "generations" / f"{name}-{digest}"

    def run_dir(self, work_dir: str | Path, key: str) -> Path:
        """The run directory of one system."""
        return self.folder(work_dir) / (f"chat-{_slug(self.chat_model or '')}" if key == "chat" else key)


def _slug(text: str) -> str:
    """A file-name-safe short form of a name or path."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", Path(text).name if "/" in text else text)[:40]


def label(key: str) -> str:
    """The readable name of a system."""
    return LABELS.get(key, key)


def generate_systems(
    setup: SystemsSetup,
    work_dir: str | Path,
    data_dir: str | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate (or resume) every system's run; return system key -> run directory."""
    options = RunOptions(batch_size=batch_size, data_dir=data_dir, progress=progress)
    out, backends = {}, {}
    for key, spec in setup.systems().items():
        run_dir = setup.run_dir(work_dir, key)
        summary = run_generation(run_dir, spec, options, backend=backends.get(spec.model))
        if summary.backend is not None:  # each model is loaded once for all its systems
            backends[spec.model] = summary.backend
        print(
            f"{label(key)}: {summary.total} answers ({summary.already_done} already done, "
            f"{summary.generated} new, {summary.seconds:.0f} s)"
        )
        out[key] = run_dir
    return out


def answers(runs: dict[str, Path]) -> pl.DataFrame:
    """All systems' answers, long: system, preset, query_id, sample, query, response, tokens, stop."""
    frames = [
        generations_frame(run_dir).with_columns(pl.lit(label(preset)).alias("system"))
        for preset, run_dir in runs.items()
    ]
    return pl.concat(frames, how="diagonal_relaxed")


def answers_wide(runs: dict[str, Path], sample: int = 0) -> pl.DataFrame:
    """One row per query, one column per system's answer (for reading side by side)."""
    long = answers(runs).filter(pl.col("sample") == sample)
    return long.pivot(on="system", index=["query_id", "query"], values="response", aggregate_function="first")


def generation_stats(runs: dict[str, Path]) -> pl.DataFrame:
    """Per system: answers, mean prompt and answer tokens, how decoding ended, seconds."""
    return (
        answers(runs)
        .group_by("system", maintain_order=True)
        .agg(
            answers=pl.len(),
            prompt_tokens=pl.col("n_prompt_tokens").mean().round(0),
            answer_tokens=pl.col("n_generated_tokens").mean().round(1),
            stopped_at_stop=(pl.col("stopped_by") == "stop").sum(),
            stopped_at_eos=(pl.col("stopped_by") == "eos").sum(),
            hit_length_cap=(pl.col("stopped_by") == "length").sum(),
            seconds=pl.col("seconds").sum().round(1),
        )
    )


def judge_systems(
    runs: dict[str, Path],
    baseline: str,
    judge: str = "embedding",
    reference: str | None = None,
    swap: bool = True,
    data_dir: str | None = None,
) -> tuple[pl.DataFrame, JudgeSpec]:
    """Judge every system's run against the baseline (cached); return all verdicts and the judge spec."""
    spec = parse_judge_spec(judge)
    frames = []
    for preset, run_dir in runs.items():
        run = JudgeRun(
            Path(run_dir), baseline, spec, swap=swap, reference=reference, data_dir=data_dir, progress=True
        )
        print_summary(run_judge(run))
        frames.append(load_verdicts(run_dir).with_columns(pl.lit(label(preset)).alias("system")))
    verdicts = pl.concat(frames)
    if swap:
        print(swap_agreement(verdicts))
    return verdicts, spec


def system_features(
    runs: dict[str, Path],
    baseline: str,
    eval_set: str,
    clusters: pl.DataFrame | None = None,
    data_dir: str | None = None,
) -> dict[str, pl.DataFrame]:
    """Per system, the breakdown features of its answers (demos kept, similarity, lengths, cluster)."""
    return {
        label(preset): run_features(run_dir, baseline, eval_set, clusters, data_dir)
        for preset, run_dir in runs.items()
    }


def answer_prompts(
    model: str,
    prompts: dict[str, tuple[str, list[str]]],
    max_new_tokens: int = 120,
    temperature: float = 0.7,
    seed: int = 0,
) -> dict[str, object]:
    """Answer a few named prompts (text, stop strings) with one model; name -> generation Result."""
    from ..generation.transformers_backend import TransformersBackend
    from ..generation.types import Request, item_seed

    backend = TransformersBackend(model)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, samples=1, seed=seed)
    requests = [
        Request(name, 0, prompt, tuple(stop), item_seed(seed, name, 0))
        for name, (prompt, stop) in prompts.items()
    ]
    return {r.request.query_id: r for r in backend.generate_batch(requests, config)}


def query_clusters(setup: SystemsSetup, data_dir: str | None = None) -> pl.DataFrame:
    """`query_id, cluster`: the pool-map cluster each query of the setup falls in (nearest centre)."""
    from ..data.loaders import load_pool
    from ..retrieval.embeddings import embed_pool
    from ..retrieval.encoders import Encoder
    from ..retrieval.settings import load_queries
    from .poolmap import build_demo_map

    settings = setup.base.retrieval
    pool, encoder = load_pool(settings.pool, data_dir), Encoder(settings.encoder).load()
    demo_map = build_demo_map(pool, embed_pool(pool, encoder))
    queries = load_queries(settings, data_dir)
    _, nearest = demo_map.place(encoder.encode(queries["prompt"].to_list()))
    return pl.DataFrame({"query_id": queries["id"], "cluster": [demo_map.names[c] for c in nearest]})


def headline(
    verdicts: pl.DataFrame, a: str = "paper", b: str = "zero-shot", boot: Bootstrap | None = None
) -> dict:
    """The paper's headline on these systems: system `a` (in-context) against `b` (zero-shot), as a
    ratio of win rates and as a paired difference, each with a paired bootstrap interval over prompts."""
    pick = {key: verdicts.filter(pl.col("system") == label(key)) for key in (a, b)}
    return paired_comparison(pick[a], pick[b], boot)


def job_summary(
    setup: SystemsSetup, runs: dict[str, Path], verdicts: pl.DataFrame, judge: JudgeSpec, boot: Bootstrap
) -> dict:
    """The numbers behind the main figures: each system's win rate with its CI and share of answers cut
    at the length cap, and the headline (in-context vs zero-shot)."""
    from ..models.registry import model_spec

    table = win_rates(verdicts, boot)
    stats = {row["system"]: row for row in generation_stats(runs).iter_rows(named=True)}
    systems = [
        {
            "system": row["system"],
            "n": row["n"],
            "win": row["win"],
            "ci_low": row["ci_low"],
            "ci_high": row["ci_high"],
            "cut_at_cap": stats[row["system"]]["hit_length_cap"] / stats[row["system"]]["answers"],
        }
        for row in table.iter_rows(named=True)
    ]
    top = headline(verdicts, boot=boot) if {"paper", "zero-shot"} <= set(runs) else None
    return {
        "model": setup.base.model,
        "model_is_base": model_spec(setup.base.model).base,
        "chat_model": setup.chat_model,
        "judge": judge.label,
        "n_queries": int(verdicts["query_id"].n_unique()),
        "max_new_tokens": setup.base.generation.max_new_tokens,
        "systems": systems,
        "headline": None if top is None else headline_numbers(top),
    }


def headline_text(summary: dict) -> str:
    """The headline as one sentence (what the main job prints at its end)."""
    top = summary.get("headline")
    if not top:
        return "no headline: the in-context and zero-shot systems were not both run"
    ratio = "undefined (zero-shot won nothing)" if top["ratio"] is None else f"{top['ratio']:.1f}x"
    if top["ratio_ci_low"] is not None:
        ratio += f" [{top['ratio_ci_low']:.1f}, {top['ratio_ci_high']:.1f}]"
    return (
        f"{summary['model']}, {summary['n_queries']} queries, {summary['judge']}: win rate zero-shot "
        f"{100 * top['win_zero_shot']:.1f}% -> in-context {100 * top['win_in_context']:.1f}%; ratio {ratio}; "
        f"paired difference {100 * top['diff']:+.1f} points "
        f"[{100 * top['diff_ci_low']:+.1f}, {100 * top['diff_ci_high']:+.1f}]"
    )


def headline_args(summary: dict) -> tuple[tuple, tuple, dict]:
    """`plot_headline`'s first three arguments from a job summary: zero-shot and in-context
    (win, CI low, CI high), and the paired ratio and difference."""
    rows = {row["system"]: row for row in summary["systems"]}
    zero, icl = (rows[label(key)] for key in ("zero-shot", "paper"))
    return (
        (zero["win"], zero["ci_low"], zero["ci_high"]),
        (icl["win"], icl["ci_low"], icl["ci_high"]),
        summary["headline"],
    )


def length_controlled_table(
    runs: dict[str, Path], verdicts: pl.DataFrame, baseline: str, boot: Bootstrap, data_dir: str | None = None
) -> pl.DataFrame:
    """Each system's raw and length-controlled win rate (see `analysis.length`), side by side."""
    from ..analysis.length import answer_lengths, with_length_control

    lengths = {label(key): answer_lengths(run_dir, baseline, data_dir) for key, run_dir in runs.items()}
    table = with_length_control(win_rates(verdicts, boot), verdicts, lengths, boot)
    return table.select(
        "system", "n", "win", "ci_low", "ci_high", "lc_win", "lc_ci_low", "lc_ci_high", "mean_length_diff"
    )
