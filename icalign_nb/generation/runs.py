"""Generation runs that survive: a run spec (retrieval settings + generation settings), and the loop that
fills a run directory, resuming whatever is already there.

Re-running the same spec skips finished items; a different spec, or the same spec over inputs
whose content changed, is refused, naming what differs.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from .. import __version__
from ..checks import device_name, endpoint_url, in_range
from ..data.loaders import load_pool, source_path
from ..data.records import parse_field_map
from ..errors import UserError
from ..files import append_jsonl, atomic_write_json, exclusive, frame_digest, output_target, repair_jsonl
from ..models.loading import (
    accelerator_dtype,
    check_dtype,
    context_length,
    load_tokenizer,
    pick_device,
    resolve_dtype,
)
from ..models.registry import DEFAULT_MODEL, ModelSpec, model_spec
from ..models.tokens import bos_rule, chat_format, encode_prompts, tokenizer_adds_bos
from ..retrieval.presets import RetrievalConfig
from ..retrieval.prompts import chat_prompt
from ..retrieval.retriever import Retrieval
from ..retrieval.settings import RetrievalSettings, build_retriever, load_queries
from .backends import make_backend
from .rundir import (
    CONFIG,
    GENERATIONS,
    RETRIEVALS,
    done_keys,
    read_config,
    read_retrievals,
    retrieval_for,
    write_retrievals,
)
from .types import BACKENDS, Backend, GenerationConfig, Request, Result, item_seed

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# How a run is done rather than what it produces: may change between resumptions.
OPERATIONAL = (
    "batch_size",
    "batch_budget",
    "device",
    "base_url",
    "concurrency",
    "max_retries",
    "tensor_parallel_size",
)
# How each backend computes attention, recorded in config.json (not compared on resume).
ATTENTION = {
    "transformers": "icalign: blocked causal prefill, decode over each prompt's keys shared by its samples",
    "vllm": "vllm",
    "openai": None,
}
# Backends that run past the model's context as the reference code did (transformers generated past
# position 4,096): there a prompt must fit the context and its answer may go beyond. Elsewhere (vLLM, a
# server) prompt and answer must fit together, and the demo budget shrinks where they would not: a
# deviation from `paper`, counted per run (config.json and the command's summary line).
PAST_CONTEXT = ("transformers",)
# Settings renamed since a run may have been recorded: old name -> new name (read, never written).
RENAMED = {"retrieval": {"budget": "demo_budget"}}


@dataclass(frozen=True)
class RunSpec:
    """What a run generates: a model answering prompts built by the retrieval settings, decoded so."""

    model: str = DEFAULT_MODEL
    backend: str = "transformers"
    served_model: str | None = None  # openai backend: the model name the server knows
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    dtype: str = "auto"  # models.loading.DTYPES; recorded as resolved (auto: bf16 where fast, else fp16/fp32)
    bos: bool | None = None  # prompts start with BOS; None: the model's rule, recorded as resolved

    def identity(self) -> dict:
        """The settings that decide the answers, as recorded and compared on resume."""
        return asdict(self)


@dataclass(frozen=True)
class RunOptions:
    """How to run (not part of a run's identity); secrets are never written to disk."""

    batch_size: int | None = None  # transformers: cap on rows decoded together; servers: saved chunk
    batch_budget: int | None = None  # transformers: prompt tokens held + max_new_tokens per row
    device: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 8
    max_retries: int = 6
    tensor_parallel_size: int = 1
    data_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        in_range("batch_size", self.batch_size, at_least=1, whole=True)
        in_range("batch_budget", self.batch_budget, at_least=1, whole=True)
        in_range("concurrency", self.concurrency, at_least=1, whole=True)
        in_range("max_retries", self.max_retries, at_least=0, whole=True)
        in_range("tensor_parallel_size", self.tensor_parallel_size, at_least=1, whole=True)
        device_name("device", self.device)
        endpoint_url("base_url", self.base_url)

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
    shrunk: int | None = None  # queries whose demo budget shrank to fit the context (None: no demos packed)


@dataclass
class ResolvedRun:
    """A run spec settled once for this machine and its inputs: everything the later steps read."""

    spec: RunSpec  # with the dtype and the BOS rule settled
    options: RunOptions
    model: ModelSpec
    retrieval: RetrievalConfig
    context: int  # the model's context window in tokens
    queries: pl.DataFrame
    pool: pl.DataFrame | None  # the demonstration pool (None: the preset draws no demos)
    inputs: dict[str, str]  # content hashes of the eval set and the pool
    tokenizer: PreTrainedTokenizerBase  # the model's own
    bos_rule: str = ""  # the rule that settled `spec.bos`, in words (config.json)
    chat_form: str | None = None  # a chat model's prompt form (`llama-chat`, `template`); None: not chat

    @property
    def past_context(self) -> bool:
        """Whether answers may run past the model's context (the reference's way; see PAST_CONTEXT)."""
        return self.spec.backend in PAST_CONTEXT

    @property
    def prompt_limit(self) -> int:
        """Tokens a prompt's ids may take: the context, less the answer's room unless it may run past."""
        return self.context - (0 if self.past_context else self.spec.generation.max_new_tokens)

    @property
    def room(self) -> int:
        """Tokens a prompt's text may take (the retrieval's limit): the prompt limit less the BOS token."""
        return self.prompt_limit - int(bool(self.spec.bos))

    def counting_tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer that counts demo tokens: the model's own unless another is named."""
        name = self.spec.retrieval.tokenizer_name(self.spec.model)
        if self.tokenizer is not None and name == self.spec.model:
            return self.tokenizer
        return load_tokenizer(name)


def check_spec(spec: RunSpec) -> tuple[ModelSpec, RetrievalConfig]:
    """Fail fast, before loading anything, on names that cannot work; the model's spec and the
    retrieval configuration they name."""
    if spec.backend not in BACKENDS:
        raise UserError(f"unknown backend '{spec.backend}'; backends: {', '.join(BACKENDS)}")
    model, retrieval = model_spec(spec.model), spec.retrieval.config()
    check_dtype(spec.dtype)
    if model.context_length and spec.generation.max_new_tokens >= model.context_length:
        raise UserError(
            f"max_new_tokens {spec.generation.max_new_tokens} leaves no room for a prompt in the context "
            f"of '{spec.model}' ({model.context_length} tokens)"
        )
    if model.chat and spec.retrieval.preset != "zero-shot":
        raise UserError(
            f"'{spec.model}' is a chat model: it answers through its chat template; use the zero-shot preset"
        )
    return model, retrieval


def resolve_run(spec: RunSpec, options: RunOptions, backend: Backend | None = None) -> ResolvedRun:
    """Settle a spec once: the names checked, the queries and pool read and hashed, the tokenizer loaded,
    `auto` resolved for this machine (the dtype the model runs in, a given backend's own; whether prompts
    start with BOS, the model's rule, a server applying its own), the context known."""
    model, retrieval = check_spec(spec)
    # the data first: no model is built or converted for a run whose data is missing
    queries = load_queries(spec.retrieval, options.data_dir)
    inputs = {"eval": frame_digest(queries, ("id", "prompt"))}
    pool = None
    if retrieval.method in {"retrieve", "random"}:
        pool = load_pool(spec.retrieval.pool, options.data_dir, parse_field_map(spec.retrieval.fields))
        inputs["pool"] = frame_digest(pool, ("id", "prompt", "response"))
    tokenizer = load_tokenizer(spec.model)
    dtype = spec.dtype
    if spec.backend == "transformers":
        loaded = getattr(backend, "dtype", None) if backend is not None else None
        if loaded is not None and dtype not in ("auto", loaded):
            raise UserError(f"the loaded model runs in {loaded}, the run asks for {dtype}")
        dtype = loaded or resolve_dtype(dtype, pick_device(options.device))
    elif spec.backend == "vllm":
        dtype = accelerator_dtype(dtype)
    bos, rule = bos_rule(spec.model, tokenizer)
    if spec.bos is not None and spec.bos != bos:
        bos, rule = spec.bos, f"set for this run (the model's rule: {rule})"
    settled = replace(spec, dtype=dtype, bos=bos)
    context = context_length(spec.model)
    if spec.generation.max_new_tokens >= context:
        raise UserError(
            f"max_new_tokens {spec.generation.max_new_tokens} leaves no room for a prompt "
            f"in the context of '{spec.model}' ({context} tokens)"
        )
    form = chat_format(spec.model, tokenizer)
    return ResolvedRun(
        settled, options, model, retrieval, context, queries, pool, inputs, tokenizer, rule, form
    )


def open_run(run_dir: str | Path) -> tuple[Path, dict | None]:
    """The run directory (created if new) and its recorded config, or one clear line if unusable."""
    path = Path(run_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"run directory {path} exists and is not a directory")
    if (path / CONFIG).exists():
        return path, read_config(path)
    if path.is_dir() and any(p.name not in (RETRIEVALS, ".lock") for p in path.iterdir()):
        raise UserError(
            f"{path} is not empty and holds no run ({CONFIG} missing); use a new or empty directory"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create run directory {path}: {exc.strerror or exc}") from None
    return path, None


def _differences(old: object, new: object, prefix: str = "") -> list[str]:
    """`name: old -> new` for every setting that differs (nested settings named with dots)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            d
            for k in sorted(set(old) | set(new))
            for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")
        ]
    return [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"] if old != new else []


def recorded_identity(recorded: dict) -> dict:
    """A recorded identity under today's setting names (a run recorded before a rename still resumes)."""
    identity = dict(recorded["identity"])
    for part, names in RENAMED.items():
        if isinstance(identity.get(part), dict):
            identity[part] = {names.get(k, k): v for k, v in identity[part].items()}
    return identity


def check_same(recorded: dict, run: ResolvedRun, path: Path) -> None:
    """Refuse to mix configurations, or inputs whose content changed, in one run directory."""
    diffs = _differences(recorded_identity(recorded), run.spec.identity())
    if diffs:
        raise UserError(
            f"run directory {path} holds a different configuration ({'; '.join(diffs)}); "
            "use a new run directory or the recorded settings"
        )
    changed = [
        name
        for name, digest in run.inputs.items()
        if recorded.get("inputs", {}).get(name) not in (None, digest)
    ]
    if changed:
        names = ", ".join(f"{n} '{getattr(run.spec.retrieval, n)}'" for n in changed)
        raise UserError(
            f"run directory {path} was generated from other content of {names}: the file changed since; "
            "use a new run directory (or restore the file)"
        )


def shrunk_queries(run: ResolvedRun, retrievals: dict[tuple[str, int | None], Retrieval]) -> int | None:
    """How many queries had their demo budget shrunk to fit the model's context (None: the preset packs
    no demos)."""
    if run.chat_form or run.retrieval.method not in {"retrieve", "random"}:
        return None
    return len({qid for (qid, _), r in retrievals.items() if r.budget < run.retrieval.demo_budget})


def write_config(path: Path, run: ResolvedRun, shrunk: int | None = None) -> None:
    """Record the run's identity, its inputs' content, and (for information) how it was started."""
    atomic_write_json(
        path / CONFIG,
        {
            "identity": run.spec.identity(),
            "retrieval_config": asdict(run.retrieval),
            "inputs": run.inputs,
            "context_length": run.context,
            "bos_rule": run.bos_rule,
            "chat_form": run.chat_form,
            "context_fit": {
                "answers_past_context": run.past_context,
                "prompt_limit": run.prompt_limit,
                "demo_budget_shrunk": shrunk,
            },
            "attention": ATTENTION.get(run.spec.backend),
            "started_with": {k: getattr(run.options, k) for k in OPERATIONAL},
            "query_ids": run.queries["id"].to_list(),
            "icalign_nb_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def build_retrievals(run: ResolvedRun) -> dict[int | None, list[Retrieval]]:
    """The retrievals that build the prompts: per sample for a preset that draws per sample, else one
    set (key None) that every sample shares."""
    spec, queries = run.spec, run.queries
    if run.chat_form:
        prompts = [
            chat_prompt(q, run.tokenizer, run.chat_form, bool(spec.bos)) for q in queries["prompt"].to_list()
        ]
        return {
            None: [
                Retrieval(qid, q, spec.retrieval.preset, [], [], prompt, [], 0)
                for qid, q, prompt in zip(
                    queries["id"].to_list(), queries["prompt"].to_list(), prompts, strict=True
                )
            ]
        }
    retriever = build_retriever(
        spec.retrieval, run.options.data_dir, run.counting_tokenizer(), pool=run.pool, config=run.retrieval
    )
    if run.retrieval.method == "random":
        return {
            s: retriever.retrieve(queries, sample=s, context_limit=run.room)
            for s in range(spec.generation.samples)
        }
    return {None: retriever.retrieve(queries, context_limit=run.room)}


def build_requests(
    run: ResolvedRun, retrievals: dict[tuple[str, int | None], Retrieval], pending: list[tuple[str, int]]
) -> tuple[list[Request], dict[tuple[str, int], Retrieval]]:
    """Requests for the unfinished items, tokenized once as the model sees them (BOS by the spec);
    a prompt over the context (with its answer's room, on backends that cannot run past it) is refused."""
    spec = run.spec
    todo = [(key, retrieval_for(retrievals, *key)) for key in pending]
    unique = list(dict.fromkeys(r.prompt for _, r in todo))
    ids = dict(zip(unique, encode_prompts(run.tokenizer, unique, bool(spec.bos)), strict=True))
    requests, meta = [], {}
    for (qid, s), r in todo:
        n = len(ids[r.prompt])
        if n > run.prompt_limit:
            answer = "" if run.past_context else f" with max_new_tokens {spec.generation.max_new_tokens}"
            raise UserError(
                f"query {qid}: prompt is {n} tokens,{answer} over the model's context of {run.context} tokens"
            )
        seed = item_seed(spec.generation.seed, qid, s)
        requests.append(Request(qid, s, r.prompt, tuple(r.stop), seed, tuple(ids[r.prompt])))
        meta[(qid, s)] = r
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
    """Generate every (query, sample) of the spec into `run_dir`, resuming whatever is already there.
    One process at a time owns a run directory (a second is refused with one line)."""
    options = options or RunOptions()
    start = time.perf_counter()
    check_spec(spec)
    path, _ = open_run(run_dir)
    _inputs_outside(path, spec, options.data_dir)
    with exclusive(path, "icalign generate"):
        summary = _fill(path, resolve_run(spec, options, backend), backend)
    summary.seconds = time.perf_counter() - start
    return summary


def _inputs_outside(path: Path, spec: RunSpec, data_dir: str | None) -> None:
    """Refuse inputs inside the run directory the run writes (an answer file would grow under its reader)."""
    folder = output_target(path)
    given = {
        "pool": source_path(spec.retrieval.pool, "pool", data_dir),
        "eval": source_path(spec.retrieval.eval, "eval set", data_dir),
        "urial_prompt": spec.retrieval.urial_prompt,
    }
    for name, source in given.items():
        if source is not None and folder in output_target(source).parents:
            raise UserError(
                f"{name} {source} is inside the run directory {path}; keep a run's inputs outside it"
            )


def _fill(path: Path, run: ResolvedRun, backend: Backend | None) -> RunSummary:
    """The work of `run_generation`, with the run directory held."""
    recorded = read_config(path) if (path / CONFIG).exists() else None
    if recorded is not None:
        check_same(recorded, run, path)
    repair_jsonl(path / GENERATIONS)
    done = done_keys(path)
    samples = run.spec.generation.samples
    total = run.queries.height * samples
    pending = [(q, s) for q in run.queries["id"].to_list() for s in range(samples) if (q, s) not in done]
    if recorded is None:
        write_retrievals(path, build_retrievals(run))
    retrievals = read_retrievals(path)
    shrunk = shrunk_queries(run, retrievals)
    if not pending and recorded is not None:
        return RunSummary(path, total, len(done), 0, {}, 0.0, shrunk=shrunk)
    requests, meta = build_requests(run, retrievals, pending)
    if recorded is None:  # recorded once the prompts are known to fit, before any answer is saved
        write_config(path, run, shrunk)
    if not requests:
        return RunSummary(path, total, len(done), 0, {}, 0.0, shrunk=shrunk)
    backend = backend or make_backend(run.spec.backend, run.spec.model, _backend_options(run))
    counts = _generate_into(
        path / GENERATIONS, backend, requests, meta, run.spec.generation, run.options.progress
    )
    generated, done_before = sum(counts.values()), total - len(requests)
    return RunSummary(path, total, done_before, generated, dict(counts), 0.0, backend, shrunk)


def _backend_options(run: ResolvedRun) -> dict:
    """What the backend is built with: how to run, the resolved dtype, the tokenizer already loaded."""
    return {
        **run.options.backend_options(),
        "served_model": run.spec.served_model,
        "dtype": run.spec.dtype,
        "tokenizer": run.tokenizer,
        "bos": run.spec.bos,
        "tokenizer_adds_bos": tokenizer_adds_bos(run.tokenizer),
    }


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
