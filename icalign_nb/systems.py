"""The systems compared side by side (zero-shot, retrieved demos, random demos, URIAL-style) as runs.

Each system is one resumable generation run under `<work_dir>/generations/<setup>/<preset>/`, where
`<setup>` names the model, data and a hash of every setting, so notebooks that share settings share
runs (a second notebook resumes a finished run instantly) and different settings never collide.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from .files import sha256_text

LABELS = {
    "zero-shot": "zero-shot (direct prompt)",
    "paper": "in-context (retrieved demos)",
    "random": "in-context (random demos)",
    "urial": "URIAL-style (fixed 3 demos)",
    "paper-short": "in-context (retrieved, 1000-token budget)",
    "paper-cosine": "in-context (retrieved, cosine)",
}


@dataclass(frozen=True)
class SystemsSetup:
    """Model, data and decoding shared by every system of a comparison."""

    model: str = "smollm2-135m"
    pool: str = "starter"
    eval: str = "starter"
    encoder: str = "minilm"
    presets: tuple[str, ...] = ("zero-shot", "paper", "random", "urial")
    limit: int | None = None
    samples: int = 1
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    backend: str = "transformers"

    def spec(self, preset: str) -> object:
        """The generation run spec of one system."""
        from .generate import GenerationConfig
        from .runs import RunSpec

        generation = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            samples=self.samples,
            seed=self.seed,
        )
        return RunSpec(
            model=self.model,
            backend=self.backend,
            pool=self.pool,
            eval=self.eval,
            preset=preset,
            encoder=self.encoder,
            limit=self.limit,
            generation=generation,
        )

    def folder(self, work_dir: str | Path) -> Path:
        """Where this setup's runs live: readable names plus a hash of every setting."""
        settings = {k: v for k, v in asdict(self).items() if k != "presets"}
        digest = sha256_text(repr(sorted(settings.items())))[:10]
        name = "-".join(_slug(str(v)) for v in (self.model, self.pool, self.eval))
        return Path(work_dir) / "generations" / f"{name}-{digest}"


def _slug(text: str) -> str:
    """A file-name-safe short form of a name or path."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", Path(text).name if "/" in text else text)[:40]


def label(preset: str) -> str:
    """The readable name of a system."""
    return LABELS.get(preset, preset)


def generate_systems(
    setup: SystemsSetup,
    work_dir: str | Path,
    data_dir: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate (or resume) every system's run; return preset -> run directory."""
    from .runs import RunOptions, run_generation

    options = RunOptions(batch_size=batch_size, data_dir=data_dir, progress=progress)
    out, backend = {}, None
    for preset in setup.presets:
        run_dir = setup.folder(work_dir) / preset
        summary = run_generation(run_dir, setup.spec(preset), options, backend=backend)
        backend = backend or summary.backend  # the model is loaded once for every system
        print(
            f"{label(preset)}: {summary.total} answers ({summary.already_done} already done, "
            f"{summary.generated} new, {summary.seconds:.0f} s)"
        )
        out[preset] = run_dir
    return out


def answers(runs: dict[str, Path]) -> pl.DataFrame:
    """All systems' answers, long: system, preset, query_id, sample, query, response, tokens, stop."""
    from .runs import load_generations

    frames = [
        load_generations(run_dir).with_columns(pl.lit(label(preset)).alias("system"))
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
) -> tuple[pl.DataFrame, object]:
    """Judge every system's run against the baseline (cached); return all verdicts and the judge spec."""
    from .judge import JudgeRun, print_summary, run_judge
    from .judges.spec import parse_judge_spec
    from .judgments import load_verdicts

    spec = parse_judge_spec(judge)
    frames = []
    for preset, run_dir in runs.items():
        run = JudgeRun(Path(run_dir), baseline, spec, swap=swap, reference=reference, data_dir=data_dir)
        print_summary(run_judge(run))
        frames.append(load_verdicts(run_dir).with_columns(pl.lit(label(preset)).alias("system")))
    return pl.concat(frames), spec


def swap_agreement(verdicts: pl.DataFrame) -> pl.DataFrame:
    """Per system: items judged in both orders, and how often the two orders gave the same verdict."""
    valid = verdicts.filter(pl.col("verdict") != "invalid")
    pairs = valid.group_by("system", "query_id", "sample", maintain_order=True).agg(
        orders=pl.len(), same=pl.col("verdict").n_unique() == 1
    )
    return (
        pairs.filter(pl.col("orders") == 2)
        .group_by("system", maintain_order=True)
        .agg(pairs=pl.len(), agree=pl.col("same").sum())
        .with_columns(agreement=pl.col("agree") / pl.col("pairs"))
    )


def system_features(
    runs: dict[str, Path],
    baseline: str,
    eval_set: str,
    retrievals: list[dict] | None = None,
    clusters: pl.DataFrame | None = None,
    data_dir: str | None = None,
) -> dict[str, pl.DataFrame]:
    """Per system, the breakdown features of its answers (demos kept, similarity, lengths, cluster)."""
    from .analysis import run_features

    return {
        label(preset): run_features(run_dir, baseline, eval_set, None, clusters, data_dir).pipe(
            _with_similarity, retrievals if preset.startswith("paper") else None
        )
        for preset, run_dir in runs.items()
    }


def _with_similarity(features: pl.DataFrame, retrievals: list[dict] | None) -> pl.DataFrame:
    """Fill `mean_similarity` from retrieval records (mean score of the kept demos)."""
    if not retrievals:
        return features
    mean = {
        r["query_id"]: sum(c["score"] for c in r["candidates"] if c["kept"]) / max(1, len(r["demo_ids"]))
        for r in retrievals
    }
    return features.with_columns(
        pl.col("query_id").replace_strict(mean, default=None).alias("mean_similarity")
    )


def breakdowns(
    verdicts: pl.DataFrame, features: dict[str, pl.DataFrame], by: str, bins: int | None = None
) -> pl.DataFrame:
    """Win rates per value (or bin) of a feature, for every system that has it."""
    from .analysis import Bootstrap, bin_column, breakdown

    usable = {  # systems where the feature is known and varies (zero-shot has no demos to count)
        system: feats
        for system, feats in features.items()
        if by in feats.columns and feats[by].drop_nulls().n_unique() > 1
    }
    if not usable:
        return pl.DataFrame()
    column = by
    union = pl.concat([f.with_columns(pl.lit(s).alias("_system")) for s, f in usable.items()])
    if bins:  # the same bin edges for every system, so their bars line up
        union = bin_column(union, by, bins)
        column = f"{by}_bin"
        usable = {s: union.filter(pl.col("_system") == s).drop("_system") for s in usable}
        order = (
            [str(c) for c in union.schema[column].categories]
            if isinstance(union.schema[column], pl.Enum)
            else sorted(str(v) for v in union[column].drop_nulls().unique())
        )
    else:
        order = [str(v) for v in union[by].drop_nulls().unique().sort()]
    frames = []
    for system, feats in usable.items():
        part = breakdown(verdicts.filter(pl.col("system") == system), feats, column, None, Bootstrap(n=500))
        if part.height:
            frames.append(part.with_columns(pl.col(column).cast(pl.String).alias("group")))
    if not frames:
        return pl.DataFrame()
    rank = {g: i for i, g in enumerate(order)}
    out = pl.concat(frames, how="diagonal_relaxed")
    return (
        out.with_columns(pl.col("group").replace_strict(rank, default=len(rank)).alias("_order"))
        .sort("_order", maintain_order=True)
        .drop("_order")
    )


def answer_prompts(
    model: str,
    prompts: dict[str, tuple[str, list[str]]],
    max_new_tokens: int = 120,
    temperature: float = 0.7,
    seed: int = 0,
) -> dict[str, object]:
    """Answer a few named prompts (text, stop strings) with one model; name -> generation Result."""
    from .generate import GenerationConfig, Request, TransformersBackend, item_seed

    backend = TransformersBackend(model, batch_size=1)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, samples=1, seed=seed)
    out = {}
    for name, (prompt, stop) in prompts.items():
        request = Request(name, 0, prompt, tuple(stop), item_seed(seed, name, 0))
        out[name] = backend.generate_batch([request], config)[0]
    return out
