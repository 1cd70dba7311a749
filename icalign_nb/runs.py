"""Generation runs that survive: a run directory, its config.json and a resumable generations.jsonl.

A run directory holds

- ``config.json``: what was asked (model, backend, data, preset, decoding), written once;
- ``generations.jsonl``: one line per finished (query, sample), appended batch by batch.

Re-running the same configuration skips the finished items; a different one is refused.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from . import __version__
from .embed import DEFAULT_ENCODER
from .errors import UserError
from .files import append_jsonl, atomic_write_json, atomic_write_text, iter_jsonl, repair_jsonl, write_jsonl
from .generate import BACKENDS, Backend, GenerationConfig, Request, Result, item_seed, make_backend
from .pipeline import DEFAULT_MODEL, RetrievalSetup, build_retriever, load_queries
from .retrieve import PRESETS, Retrieval, get_preset

CONFIG = "config.json"
GENERATIONS = "generations.jsonl"
RECORD_FIELDS = (
    "query_id",
    "sample",
    "query",
    "preset",
    "demo_ids",
    "response",
    "n_prompt_tokens",
    "n_generated_tokens",
    "stopped_by",
    "seconds",
)
# How a run is done rather than what it produces: may change between resumptions.
OPERATIONAL = ("batch_size", "device", "base_url", "concurrency", "max_retries", "tensor_parallel_size")


@dataclass(frozen=True)
class RunSpec:
    """What a run generates: the model, the data and prompts, and the decoding settings."""

    model: str = DEFAULT_MODEL
    backend: str = "transformers"
    pool: str = "starter"
    eval: str = "starter"
    preset: str = "paper"
    encoder: str = DEFAULT_ENCODER
    tokenizer: str | None = None  # counts prompt tokens (default: the model's own)
    urial_prompt: str | None = None
    fields: str | None = None
    limit: int | None = None
    served_model: str | None = None  # openai backend: the model name the server knows
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def identity(self) -> dict:
        """The settings that decide the answers, flat, as compared on resume."""
        out = asdict(self)
        out.update(out.pop("generation"))
        return out


@dataclass(frozen=True)
class RunOptions:
    """How to run (not part of a run's identity); secrets are never written to disk."""

    batch_size: int = 8
    device: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 8
    max_retries: int = 6
    tensor_parallel_size: int = 1
    data_dir: str | None = None
    progress: bool = True

    def backend_options(self) -> dict:
        """Keyword options for `make_backend`."""
        return {k: getattr(self, k) for k in (*OPERATIONAL, "api_key")}


@dataclass
class RunSummary:
    """What one invocation did."""

    run_dir: Path
    total: int
    already_done: int
    generated: int
    stopped_by: dict[str, int]
    seconds: float
    backend: Backend | None = None  # the backend that generated, for reuse by the next run (not saved)


def check_spec(spec: RunSpec) -> None:
    """Fail fast, before loading anything, on names that cannot work."""
    if spec.backend not in BACKENDS:
        raise UserError(f"unknown backend '{spec.backend}'; backends: {', '.join(BACKENDS)}")
    if spec.preset not in PRESETS:
        raise UserError(f"unknown preset '{spec.preset}'; presets: {', '.join(PRESETS)}")
    if spec.limit is not None and spec.limit < 1:
        raise UserError(f"limit must be >= 1 (got {spec.limit})")
    from .models import model_spec

    if model_spec(spec.model).chat and spec.preset != "zero-shot":
        raise UserError(
            f"'{spec.model}' is a chat model: it answers through its chat template; use --preset zero-shot"
        )


def open_run(run_dir: str | Path) -> tuple[Path, dict | None]:
    """The run directory (created if new) and its recorded config, or one clear line if unusable."""
    path = Path(run_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"run directory {path} exists and is not a directory")
    config_path = path / CONFIG
    if config_path.exists():
        import json

        try:
            recorded = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{config_path}: not a readable run config ({exc})") from None
        if not isinstance(recorded, dict) or "identity" not in recorded:
            raise UserError(f"{config_path}: not a generation run config (no 'identity')")
        return path, recorded
    if path.is_dir() and any(path.iterdir()):
        raise UserError(
            f"{path} is not empty and holds no run ({CONFIG} missing); use a new or empty directory"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create run directory {path}: {exc.strerror or exc}") from None
    return path, None


def check_same(recorded: dict, spec: RunSpec, path: Path) -> None:
    """Refuse to mix configurations in one run directory, naming what differs."""
    old, new = recorded["identity"], spec.identity()
    diffs = [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    if diffs:
        raise UserError(
            f"run directory {path} holds a different configuration ({'; '.join(diffs)}); "
            "use a new --run directory or the recorded settings"
        )


def write_config(path: Path, spec: RunSpec, options: RunOptions, query_ids: list[str], context: int) -> None:
    """Record the run's identity and, for information, how it was started."""
    retrieval = asdict(get_preset(spec.preset))
    atomic_write_json(
        path / CONFIG,
        {
            "identity": spec.identity(),
            "retrieval": retrieval,
            "context_length": context,
            "started_with": {k: getattr(options, k) for k in OPERATIONAL},
            "query_ids": query_ids,
            "icalign_nb_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def done_keys(path: Path) -> set[tuple[str, int]]:
    """The finished (query_id, sample) items, after cutting a line torn by a kill."""
    file = path / GENERATIONS
    repair_jsonl(file)
    if not file.exists():
        return set()
    return {(str(obj["query_id"]), int(obj["sample"])) for _, obj in iter_jsonl(file)}


def build_prompts(
    spec: RunSpec, queries: pl.DataFrame, tokenizer: object, context_limit: int, data_dir: str | None
) -> dict[int, list[Retrieval]]:
    """Prompts per sample: the random preset draws demos per sample, the others once for all."""
    from .models import model_spec
    from .prompts import chat_prompt

    if model_spec(spec.model).chat:
        rows = [
            Retrieval(qid, q, spec.preset, [], [], chat_prompt(q, tokenizer), [], 0)
            for qid, q in zip(queries["id"].to_list(), queries["prompt"].to_list(), strict=True)
        ]
        return {s: rows for s in range(spec.generation.samples)}
    setup = RetrievalSetup(
        pool=spec.pool,
        eval=spec.eval,
        preset=spec.preset,
        encoder=spec.encoder,
        tokenizer=spec.tokenizer or spec.model,
        urial_prompt=spec.urial_prompt,
        fields=spec.fields,
        seed=spec.generation.seed,
        limit=spec.limit,
        data_dir=data_dir,
    )
    retriever = build_retriever(setup, tokenizer=tokenizer)
    if get_preset(spec.preset).method == "random":
        return {
            s: retriever.retrieve(queries, sample=s, context_limit=context_limit)
            for s in range(spec.generation.samples)
        }
    rows = retriever.retrieve(queries, context_limit=context_limit)
    return {s: rows for s in range(spec.generation.samples)}


def build_requests(
    spec: RunSpec,
    prompts: dict[int, list[Retrieval]],
    done: set[tuple[str, int]],
    tokenizer: object,
    context: int,
) -> tuple[list[Request], dict[tuple[str, int], Retrieval]]:
    """Requests for the unfinished items, tokenized once; a prompt over the context is refused."""
    todo = [(s, r) for s, rows in prompts.items() for r in rows if (r.query_id, s) not in done]
    if not todo:
        return [], {}
    unique = {r.prompt: None for _, r in todo}
    ids = dict(zip(unique, tokenizer(list(unique), add_special_tokens=False)["input_ids"], strict=True))
    room = context - spec.generation.max_new_tokens
    requests, meta = [], {}
    for s, r in todo:
        n = len(ids[r.prompt])
        if n > room:
            raise UserError(
                f"query {r.query_id}: prompt is {n} tokens; with max_new_tokens "
                f"{spec.generation.max_new_tokens} it is over the model's context of {context} tokens"
            )
        seed = item_seed(spec.generation.seed, r.query_id, s)
        requests.append(Request(r.query_id, s, r.prompt, tuple(r.stop), seed, tuple(ids[r.prompt])))
        meta[(r.query_id, s)] = r
    return requests, meta


def to_record(result: Result, retrieval: Retrieval) -> dict:
    """The saved line for one finished item."""
    req = result.request
    return {
        "query_id": req.query_id,
        "sample": req.sample,
        "query": retrieval.query,
        "preset": retrieval.preset,
        "demo_ids": list(retrieval.demo_ids),
        "response": result.response,
        "n_prompt_tokens": result.n_prompt_tokens,
        "n_generated_tokens": result.n_generated_tokens,
        "stopped_by": result.stopped_by,
        "seconds": round(result.seconds, 4),
    }


def run_generation(
    run_dir: str | Path, spec: RunSpec, options: RunOptions | None = None, backend: Backend | None = None
) -> RunSummary:
    """Generate every (query, sample) of the spec into `run_dir`, resuming whatever is already there."""
    from .models import context_length, load_tokenizer

    options = options or RunOptions()
    start = time.perf_counter()
    check_spec(spec)
    path, recorded = open_run(run_dir)
    if recorded is not None:
        check_same(recorded, spec, path)
    context = context_length(spec.model)
    if spec.generation.max_new_tokens >= context:
        raise UserError(
            f"max_new_tokens {spec.generation.max_new_tokens} leaves no room for a prompt "
            f"in the context of '{spec.model}' ({context} tokens)"
        )
    setup = RetrievalSetup(eval=spec.eval, limit=spec.limit, data_dir=options.data_dir)
    queries = load_queries(setup)
    done = done_keys(path)
    total = queries.height * spec.generation.samples
    tokenizer = load_tokenizer(spec.tokenizer or spec.model)
    pending = [
        (q, s) for q in queries["id"].to_list() for s in range(spec.generation.samples) if (q, s) not in done
    ]
    if not pending:
        if recorded is None:
            write_config(path, spec, options, queries["id"].to_list(), context)
        return RunSummary(path, total, len(done), 0, {}, time.perf_counter() - start)
    prompts = build_prompts(
        spec, queries, tokenizer, context - spec.generation.max_new_tokens, options.data_dir
    )
    requests, meta = build_requests(spec, prompts, done, tokenizer, context)
    if recorded is None:  # recorded once the prompts are known to fit, before any answer is saved
        write_config(path, spec, options, queries["id"].to_list(), context)
    backend = backend or make_backend(spec.backend, spec.model, _backend_options(spec, options))
    counts = _generate_into(path / GENERATIONS, backend, requests, meta, spec.generation, options.progress)
    return RunSummary(
        path,
        total,
        total - len(requests),
        sum(counts.values()),
        dict(counts),
        time.perf_counter() - start,
        backend,
    )


def _backend_options(spec: RunSpec, options: RunOptions) -> dict:
    return {**options.backend_options(), "served_model": spec.served_model}


def _generate_into(
    file: Path,
    backend: Backend,
    requests: Sequence[Request],
    meta: dict[tuple[str, int], Retrieval],
    config: GenerationConfig,
    progress: bool,
) -> Counter:
    """Run the backend and append each finished batch with one write; show items and tokens/s."""
    from tqdm.auto import tqdm

    counts: Counter = Counter()
    tokens, start = 0, time.perf_counter()
    with tqdm(
        total=len(requests), unit="item", desc="generate", file=sys.stderr, disable=not progress
    ) as bar:
        for results in backend.generate(requests, config):
            append_jsonl(file, [to_record(r, meta[r.request.key]) for r in results])
            counts.update(r.stopped_by for r in results)
            tokens += sum(r.n_generated_tokens for r in results)
            bar.update(len(results))
            bar.set_postfix_str(f"{tokens / max(time.perf_counter() - start, 1e-9):.1f} tok/s")
    return counts


def load_generations(run_dir: str | Path) -> pl.DataFrame:
    """A run's generations as a DataFrame, one row per (query, sample)."""
    file = Path(run_dir) / GENERATIONS
    if not file.exists():
        raise UserError(f"{file}: no generations (run `icalign generate --run {run_dir}` first)")
    rows = _complete_lines(file)
    schema = {
        "query_id": pl.String,
        "sample": pl.Int64,
        "query": pl.String,
        "preset": pl.String,
        "demo_ids": pl.List(pl.String),
        "response": pl.String,
        "n_prompt_tokens": pl.Int64,
        "n_generated_tokens": pl.Int64,
        "stopped_by": pl.String,
        "seconds": pl.Float64,
    }
    return pl.DataFrame([{k: r.get(k) for k in RECORD_FIELDS} for r in rows], schema=schema)


def _complete_lines(file: Path) -> list[dict]:
    """The finished lines of a generations file, read-only (a line still being written is left out)."""
    import json

    data = file.read_bytes()
    rows = []
    for lineno, line in enumerate(data[: data.rfind(b"\n") + 1].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserError(f"{file}:{lineno}: malformed JSON ({exc.msg})") from None
    return rows


def read_config(run_dir: str | Path) -> dict:
    """A run's recorded config.json."""
    return open_run_readonly(run_dir)[1]


def open_run_readonly(run_dir: str | Path) -> tuple[Path, dict]:
    """An existing run's path and config, without creating anything."""
    path = Path(run_dir).expanduser()
    if not (path / CONFIG).exists():
        raise UserError(f"{path} is not a run directory ({CONFIG} missing)")
    return open_run(path)  # type: ignore[return-value]


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
    path, config = open_run_readonly(run_dir)
    frame = load_generations(path)
    identity = config["identity"]
    expected = len(config.get("query_ids", [])) * int(identity["samples"])
    if frame.height < expected:
        raise UserError(
            f"run {path} is incomplete ({frame.height} of {expected} items); "
            "re-run `icalign generate` to finish it"
        )
    groups = _ordered(frame, config.get("query_ids", []))
    if fmt == "paper":
        write_jsonl(
            Path(out),
            [{"prompt": g["query"][0], "response_list": g["response"].to_list()} for _, g in groups],
        )
    elif fmt == "alpaca_eval":
        import json

        name = generator or f"{identity['model']}_{identity['preset']}"
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
