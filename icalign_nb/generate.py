"""Generation: decoding settings, the small backend interface, and the transformers backend.

Every backend takes `Request`s (a prompt, its stop strings and a per-item seed) and yields lists of
`Result`s, one list per finished batch, so the caller can save each batch before starting the next.
The vLLM and OpenAI-compatible server backends live in `icalign_nb.backends`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from .errors import UserError
from .files import sha256_text
from .prompts import clean_answer

BACKENDS = ("transformers", "vllm", "openai")


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings; the defaults are the paper's (transformers' default top_k=50 kept)."""

    max_new_tokens: int = 1000
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int | None = 50  # None or 0: no top-k filter
    samples: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be >= 1 (got {self.max_new_tokens})")
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0 (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.top_k is not None and self.top_k < 0:
            raise UserError(f"top_k must be >= 0 (got {self.top_k})")
        if self.samples < 1:
            raise UserError(f"samples must be >= 1 (got {self.samples})")

    @property
    def greedy(self) -> bool:
        """Temperature 0 means greedy decoding."""
        return self.temperature == 0

    @property
    def effective_top_k(self) -> int | None:
        """The top-k filter in force, or None."""
        return self.top_k or None

    def to_json(self) -> dict:
        """The settings as recorded in a run's config.json."""
        return asdict(self)


@dataclass(frozen=True)
class Request:
    """One item to generate: a (query, sample) with its prompt, stops and seed."""

    query_id: str
    sample: int
    prompt: str
    stop: tuple[str, ...]
    seed: int
    prompt_ids: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[str, int]:
        """The item's identity in a run."""
        return (self.query_id, self.sample)


@dataclass(frozen=True)
class Result:
    """A finished item: the cleaned answer and how decoding ended."""

    request: Request
    response: str
    n_prompt_tokens: int
    n_generated_tokens: int
    stopped_by: str  # stop | eos | length
    seconds: float  # the item's share of its batch's wall time (they sum to the total)


class Backend(Protocol):
    """What the run loop needs from a backend."""

    name: str

    def generate(self, requests: Sequence[Request], config: GenerationConfig) -> Iterator[list[Result]]:
        """Yield results batch by batch (every request exactly once)."""
        ...


def item_seed(seed: int, query_id: str, sample: int) -> int:
    """A per-item seed: the same (run seed, query, sample) always samples the same answer."""
    return int(sha256_text(str(seed), query_id, str(sample))[:15], 16)


def length_batches(requests: Sequence[Request], batch_size: int) -> list[list[Request]]:
    """Group requests of similar prompt length (and equal stops) into batches of at most `batch_size`."""
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1 (got {batch_size})")
    ordered = sorted(requests, key=lambda r: (r.stop, len(r.prompt_ids) or len(r.prompt), r.key))
    batches: list[list[Request]] = []
    for req in ordered:
        if batches and len(batches[-1]) < batch_size and batches[-1][0].stop == req.stop:
            batches[-1].append(req)
        else:
            batches.append([req])
    return batches


def finish_row(
    ids: Sequence[int], tokenizer: object, stops: Sequence[str], eos_ids: set[int], pad_id: int | None
) -> tuple[str, int, str]:
    """Decode one row's new tokens: (cleaned answer, tokens generated, stop|eos|length).

    Rows that finished early are padded; the first eos/pad marks the row's end. A stop string that
    the in-flight check caught is still in the text and is cut here, never saved.
    """
    end = next((i for i, t in enumerate(ids) if t in eos_ids or t == pad_id), len(ids))
    text = tokenizer.decode(list(ids[:end]), skip_special_tokens=True)
    answer, stopped = clean_answer(text, stops)
    if stopped:
        return answer, end, "stop"
    if end < len(ids) and ids[end] in eos_ids:
        return answer, end + 1, "eos"
    return answer, end, "length"


def make_sampler(seeds: Sequence[int], config: GenerationConfig, device: object) -> object:
    """A logits processor that samples each row with its own generator (batch-independent samples)."""
    import torch
    from transformers.generation import (
        LogitsProcessor,
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = LogitsProcessorList([TemperatureLogitsWarper(config.temperature)])
    if config.effective_top_k:
        warpers.append(TopKLogitsWarper(config.effective_top_k))
    if config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(config.top_p))
    generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    class RowSampler(LogitsProcessor):
        """Warp as transformers' sampling does, draw per row, and leave only the drawn token."""

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            probs = torch.softmax(warpers(input_ids, scores).float(), dim=-1)
            picks = torch.cat(
                [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators, strict=True)]
            )
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(1, picks[:, None], 0.0)

    return RowSampler()


class TransformersBackend:
    """Batched `model.generate` with left padding, stop strings in flight and per-row seeds."""

    name = "transformers"

    def __init__(
        self,
        model_name: str,
        batch_size: int = 8,
        device: str | None = None,
        model: object | None = None,
        tokenizer: object | None = None,
    ) -> None:
        from .models import load_model, load_tokenizer

        self.model_name = model_name
        self.batch_size = batch_size
        self.tokenizer = tokenizer or load_tokenizer(model_name)
        self.model = model or load_model(model_name, device=device)

    def generate(self, requests: Sequence[Request], config: GenerationConfig) -> Iterator[list[Result]]:
        """Yield one list of results per batch of similar-length prompts."""
        for batch in length_batches(requests, self.batch_size):
            yield self.generate_batch(batch, config)

    def generate_batch(self, batch: Sequence[Request], config: GenerationConfig) -> list[Result]:
        """Generate one batch; every row stops at its own stop string, eos or the token cap."""
        import torch

        start = time.perf_counter()
        tok, model = self.tokenizer, self.model
        enc = tok([r.prompt for r in batch], add_special_tokens=False, padding=True, return_tensors="pt")
        enc = {k: v.to(model.device) for k, v in enc.items()}
        eos_ids = self._eos_ids()
        kwargs: dict = {"generation_config": self._generation_config(batch[0].stop, config, eos_ids)}
        if batch[0].stop:
            kwargs["tokenizer"] = tok
        if not config.greedy:
            from transformers.generation import LogitsProcessorList

            sampler = make_sampler([r.seed for r in batch], config, model.device)
            kwargs["logits_processor"] = LogitsProcessorList([sampler])
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        n_prompt = enc["attention_mask"].sum(dim=1).tolist()
        share = (time.perf_counter() - start) / len(batch)
        results = []
        for req, ids, n_in in zip(batch, new, n_prompt, strict=True):
            answer, n_gen, how = finish_row(ids, tok, req.stop, eos_ids, tok.pad_token_id)
            results.append(Result(req, answer, int(n_in), n_gen, how, share))
        return results

    def _eos_ids(self) -> set[int]:
        """End-of-sequence ids from the model's generation config and the tokenizer."""
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _generation_config(
        self, stops: tuple[str, ...], config: GenerationConfig, eos_ids: set[int]
    ) -> object:
        """A clean transformers GenerationConfig: sampling is done by the per-row sampler."""
        from transformers import GenerationConfig as HFGenerationConfig

        return HFGenerationConfig(
            max_new_tokens=config.max_new_tokens,
            do_sample=False,
            eos_token_id=sorted(eos_ids),
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(stops) or None,
        )


def make_backend(name: str, model: str, options: dict | None = None) -> Backend:
    """A backend by name: transformers (default), vllm or openai (an OpenAI-compatible server)."""
    options = dict(options or {})
    if name == "transformers":
        return TransformersBackend(
            model, batch_size=options.get("batch_size", 8), device=options.get("device")
        )
    if name == "vllm":
        from .backends.vllm import VLLMBackend

        return VLLMBackend(
            model,
            tensor_parallel_size=options.get("tensor_parallel_size", 1),
            chunk_size=options.get("batch_size", 256),
        )
    if name == "openai":
        from .backends.openai_server import ServerBackend, ServerOptions

        return ServerBackend(
            ServerOptions.from_env(
                served_model=options.get("served_model") or model,
                base_url=options.get("base_url"),
                api_key=options.get("api_key"),
                concurrency=options.get("concurrency", 8),
                max_retries=options.get("max_retries", 6),
                timeout=options.get("timeout", 600.0),
                chunk_size=options.get("batch_size", 64),
            )
        )
    raise UserError(f"unknown backend '{name}'; backends: {', '.join(BACKENDS)}")
