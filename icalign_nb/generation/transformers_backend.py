"""The transformers backend: continuous batching on a local model, prompts encoded once, stops in flight.

Rows run together in one batch. Each distinct prompt is prefilled once (batch 1, no padding) and
its keys and values are shared by all its samples; a row that hits a stop string, eos or the cap
leaves at once, its key/value blocks go back to the pool, and a queued row joins at the next step.
How many rows run is set by a token budget, counted in the cache's 64-token blocks (each held
prompt's blocks plus `max_new_tokens`' worth of blocks reserved per row), capped by `max_rows`;
the key/value pool is allocated from the same budget (`kvcache.py`). Every (seed, query, sample)
draws from its own generator, one uniform per token, so a row's answer does not depend on what else
is in the batch (exactly in float32; bfloat16 matmuls may round differently in another batch). An
optional callback sees each row's new token and text after every step and can stop the call.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import UserError
from ..retrieval.prompts import clean_answer
from .streaming import CANCELLED, OnTokens, TextStream, TokenEvent
from .types import GenerationConfig, Request, Result

if TYPE_CHECKING:
    from .native import StepKernels

MAX_ROWS = 32  # default cap on rows decoded together
TOKEN_BUDGET = 131_072  # default: prompt tokens held + max_new_tokens per running row (32 rows of 3k+256),
# counted in whole 64-token blocks


def blocks(tokens: int) -> int:
    """Key/value blocks that hold `tokens` (the budget's unit)."""
    from .kvcache import BLOCK

    return -(-tokens // BLOCK)


def finish_row(
    ids: Sequence[int], tokenizer: object, stops: Sequence[str], eos_ids: set[int], pad_id: int | None
) -> tuple[str, int, str]:
    """Decode one row's new tokens: (cleaned answer, tokens generated, stop|eos|length).

    The first eos (or pad) marks the row's end. A stop string that the in-flight check caught is
    still in the text and is cut here, never saved.
    """
    end = next((i for i, t in enumerate(ids) if t in eos_ids or t == pad_id), len(ids))
    text = tokenizer.decode(list(ids[:end]), skip_special_tokens=True)
    answer, stopped = clean_answer(text, stops)
    if stopped:
        return answer, end, "stop"
    if end < len(ids) and ids[end] in eos_ids:
        return answer, end + 1, "eos"
    return answer, end, "length"


class Sampler:
    """Next tokens of a batch of rows: temperature, then top-k, then top-p, then one uniform draw from
    each row's own generator (inverse CDF over the kept tokens); temperature 0 is greedy. With the built
    kernels, the top-k (or argmax) is read from the logits in their own dtype, equal values by lowest
    index first."""

    def __init__(self, config: GenerationConfig, kernels: StepKernels | None = None) -> None:
        self.config, self.kernels = config, kernels

    def pick(self, logits: object, generators: Sequence[object]) -> list[int]:
        """One token per row of `logits` [rows, vocab] (any float dtype; computed in float32)."""
        import torch

        config = self.config
        if len(generators) != logits.shape[0]:
            raise ValueError(f"{logits.shape[0]} rows of logits but {len(generators)} generators")
        top = self.kernels.top if self.kernels is not None and self.kernels.takes(logits) else None
        if top is None:
            logits = logits.float()
        if config.greedy:
            return (top(logits, 1)[1] if top else logits.argmax(dim=-1)).flatten().tolist()
        k = config.effective_top_k
        if k and k < logits.shape[-1] and top:
            values, index = top(logits, k)
            values = values / config.temperature  # the same values as dividing every logit first
        elif k and k < logits.shape[-1]:
            values, index = torch.topk(logits / config.temperature, k, dim=-1)
        else:
            values, index = torch.sort(logits / config.temperature, dim=-1, descending=True)
        probs = torch.softmax(values, dim=-1)
        if config.top_p < 1.0:
            probs = probs * ((probs.cumsum(-1) - probs) < config.top_p)
        cdf = probs.cumsum(-1)
        draws = torch.stack([torch.rand((), generator=g) for g in generators]).to(cdf.device)
        chosen = torch.searchsorted(cdf, (draws * cdf[:, -1])[:, None]).clamp(max=cdf.shape[-1] - 1)
        return index.gather(1, chosen).flatten().tolist()


@dataclass
class _Group:
    """A distinct prompt and its samples."""

    ids: list[int]
    waiting: deque[Request]
    held: int | None = None  # its id in the key/value state while its keys and values are held
    logits: object = None  # the prompt's next-token logits, kept while samples wait
    live: int = 0  # rows running


@dataclass
class _Row:
    """A running (query, sample)."""

    request: Request
    group: _Group
    generator: object
    started: float
    held: int  # its id in the key/value state
    tokens: list[int] = field(default_factory=list)
    stopped_by: str = ""
    stream: TextStream | None = None


@dataclass
class LoopStats:
    """Where a `generate` call spent its time and memory (read by the benchmark)."""

    prefills: int = 0
    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    longest_prefill: int = 0
    steps: int = 0
    row_steps: int = 0  # tokens decoded by live rows
    decode_seconds: float = 0.0
    max_rows: int = 0
    kv_pool_bytes: int = 0  # the key/value pool's size (allocated from the budget)
    kv_peak_bytes: int = 0  # the most of it held at once
    kv_peak_tokens: dict = field(default_factory=dict)  # per kind of layer (window or None)


class TransformersBackend:
    """Continuous batching over a local transformers model (see the module docstring)."""

    name = "transformers"

    def __init__(
        self,
        model_name: str,
        batch_size: int | None = None,
        device: str | None = None,
        model: object | None = None,
        tokenizer: object | None = None,
        dtype: str = "auto",
        token_budget: int = TOKEN_BUDGET,
        native: bool = True,
    ) -> None:
        from ..models.loading import load_model, load_tokenizer
        from ..models.tokens import prompt_bos
        from .attention import NAME, probe_layers, register
        from .decoder import LeanDecoder
        from .native import step_kernels
        from .quantize import QUANTISED, quantise, quantised_kind, use_kernels

        if batch_size is not None and batch_size < 1:
            raise UserError(f"batch size must be >= 1 (got {batch_size})")
        if token_budget < 1:
            raise UserError(f"token budget must be >= 1 (got {token_budget})")
        register()
        self.model_name = model_name
        self.max_rows = batch_size or MAX_ROWS
        self.token_budget = token_budget
        self.tokenizer = tokenizer or load_tokenizer(model_name)
        self.model = model or load_model(model_name, device=device, dtype=dtype, attention=NAME)
        if dtype in QUANTISED and quantised_kind(self.model) is None:
            if self.model.device.type != "cpu":
                raise UserError(f"--dtype {dtype} runs on the CPU only (torch's weight-only {dtype} kernels)")
            quantise(self.model, dtype)
        if self.model.config._attn_implementation != NAME:
            self.model.set_attn_implementation(NAME)  # a drop-in for SDPA outside this loop
        self.layers = probe_layers(self.model)  # refuses what the loop does not implement
        # a decode step's attention, Gemma 3's norms and a few rows' products as built kernels (on the CPU,
        # where they build)
        self.kernels = step_kernels() if native and self.model.device.type == "cpu" else None
        use_kernels(self.model, self.kernels)  # the int8 layers' products of a few rows
        # decode steps without per-module overhead, if it can
        self.decoder = LeanDecoder.build(self.model, self.kernels)
        self.bos = prompt_bos(model_name, self.tokenizer, self.model.config)
        self.stats = LoopStats()

    @property
    def dtype(self) -> str:
        """The dtype the model runs in, as recorded: `bfloat16`, `float32`, ..., or `int8`/`int4` (quantised
        weights)."""
        from .quantize import quantised_kind

        return quantised_kind(self.model) or str(self.model.dtype).removeprefix("torch.")

    def encode(self, prompt: str) -> list[int]:
        """A prompt's token ids as this model sees them (BOS by the model's rule)."""
        from ..models.tokens import encode_prompts

        return encode_prompts(self.tokenizer, [prompt], self.bos)[0]

    def generate(
        self,
        requests: Sequence[Request],
        config: GenerationConfig,
        on_tokens: OnTokens | None = None,
        ignore_eos: bool = False,
    ) -> Iterator[list[Result]]:
        """Yield the rows that finished at each step (every request exactly once). `on_tokens`, if
        given, receives after each prefill and each step one `TokenEvent` per row that drew a token
        (new text: whole characters, never a stop string); returning False from it ends every row at
        once, running and queued, as `cancelled`. `ignore_eos`: an end-of-sequence token ends nothing
        (benchmarks that need a length)."""
        self.stats = LoopStats()
        yield from _Loop(self, config, on_tokens, ignore_eos).run(requests)

    def generate_batch(self, batch: Sequence[Request], config: GenerationConfig) -> list[Result]:
        """All results of `batch` at once, in request order."""
        done = {r.request.key: r for results in self.generate(batch, config) for r in results}
        return [done[r.key] for r in batch]

    def eos_ids(self) -> set[int]:
        """End-of-sequence ids from the model's generation config and the tokenizer."""
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids


class _Loop:
    """One `generate` call: admission by budget, prefills, decode steps, finishing rows."""

    def __init__(
        self,
        backend: TransformersBackend,
        config: GenerationConfig,
        on_tokens: OnTokens | None,
        ignore_eos: bool,
    ) -> None:
        self.backend, self.config, self.on_tokens = backend, config, on_tokens
        self.model, self.tokenizer = backend.model, backend.tokenizer
        self.sampler = Sampler(config, backend.kernels)
        self.eos = set() if ignore_eos else backend.eos_ids()
        self.stats = backend.stats
        self.windows: dict[tuple[str, ...], int] = {}
        self.rows: list[_Row] = []  # running, in the order they joined
        self.events: list[TokenEvent] = []
        self.stopping = False  # the callback said stop
        self.state = None
        self.budget_blocks = 0  # the token budget in blocks, as the pool allows

    def run(self, requests: Sequence[Request]) -> Iterator[list[Result]]:
        """The decode loop."""
        import torch

        from .kvcache import BLOCK, KVState, capacities, fit_devices, layer_dims
        from .memory import prefill_activation_bytes

        queue = self._groups(requests)
        if not queue:
            return
        backend = self.backend
        layers = backend.layers
        capacity = capacities(
            layers,
            backend.token_budget,
            backend.max_rows,
            self.config.max_new_tokens,
            [len(g.ids) for g in queue],
            len(requests),
        )
        text_config = self.model.config.get_text_config()
        heads, kv_heads, head_dim = layer_dims(text_config)
        longest = max(len(g.ids) for g in queue)
        reserve = 2 * prefill_activation_bytes(text_config, longest, self.model.dtype) + 2**30
        fitted = fit_devices(capacity, layers, kv_heads, head_dim, self.model.dtype, reserve)
        if fitted != capacity:
            print(
                f"note: the key/value pool holds {BLOCK * min(fitted.values()):,} tokens, cut from "
                f"{BLOCK * min(capacity.values()):,} to fit the GPU's free memory; fewer rows run together",
                file=sys.stderr,
            )
        self.budget_blocks = min(backend.token_budget // BLOCK, fitted.get(None, min(fitted.values())))
        self.state = KVState(
            layers, heads, kv_heads, head_dim, self.model.dtype, fitted, kernels=backend.kernels
        )
        self.stats.kv_pool_bytes = sum(k.numel() * k.element_size() * 2 for k in self.state.keys)
        try:
            while queue or self.rows:
                with torch.inference_mode():
                    finished = self._advance(queue)
                if finished:
                    yield finished
        finally:
            self.stats.kv_peak_bytes = self.state.peak_bytes()
            self.stats.kv_peak_tokens = {w: k.peak * self.state.block for w, k in self.state.kinds.items()}
            self.state = None  # the pool goes with the call

    def _advance(self, queue: deque[_Group]) -> list[Result]:
        """Admit what fits, then one decode step of every running row; the rows that finished."""
        import torch

        finished: list[Result] = []
        self._admit(queue, finished)
        live = list(self.rows)
        if live and not self.stopping:
            start = time.perf_counter()
            state = self.state
            held = [r.held for r in live]
            state.begin_step(held)
            device = self.model.device
            tokens = torch.tensor([[r.tokens[-1]] for r in live], device=device)
            positions = state.positions(held).to(device)
            if self.backend.decoder is not None:  # the logits in the model's dtype (the sampler's concern)
                logits = self.backend.decoder(tokens, positions, state)
            else:
                out = self.model(input_ids=tokens, position_ids=positions, kv_state=state, use_cache=False)
                logits = out.logits[:, -1]
            state.end_step()
            picked = self.sampler.pick(logits, [r.generator for r in live])
            for i, (row, token) in enumerate(zip(live, picked, strict=True)):
                self._take(row, token, logits[i], finished)
            stats = self.stats
            stats.steps += 1
            stats.row_steps += len(live)
            stats.max_rows = max(stats.max_rows, len(live))
            stats.decode_seconds += time.perf_counter() - start
        if not self._tell():
            finished += self._cancel(queue)
        return finished

    def _tell(self) -> bool:
        """Hand the pending token events to the callback; False when it said stop."""
        if not self.events:
            return not self.stopping
        events, self.events = self.events, []
        self.stopping = self.stopping or self.on_tokens(events) is False
        return not self.stopping

    def _groups(self, requests: Sequence[Request]) -> deque[_Group]:
        """The queue: one group per distinct prompt (token ids), in order of first appearance."""
        by_ids: dict[tuple[int, ...], _Group] = {}
        for req in requests:
            ids = tuple(req.prompt_ids) or tuple(self.backend.encode(req.prompt))
            if not ids:
                raise UserError(f"request {req.key} has an empty prompt")
            group = by_ids.setdefault(ids, _Group(list(ids), deque()))
            group.waiting.append(req)
        return deque(by_ids.values())

    def _used(self) -> int:
        """Blocks the running batch holds against the budget: its prompts', and each row's reserve."""
        held = sum(blocks(len(g.ids)) for g in {id(r.group): r.group for r in self.rows}.values())
        return held + len(self.rows) * blocks(self.config.max_new_tokens)

    def _admit(self, queue: deque[_Group], finished: list[Result]) -> None:
        """Start queued rows while the budget and the row cap allow (at least one if nothing runs)."""
        reserve = blocks(self.config.max_new_tokens)
        while queue:
            group = queue[0]
            running = len(self.rows)
            room = self.budget_blocks - self._used() - (blocks(len(group.ids)) if group.live == 0 else 0)
            k = min(len(group.waiting), self.backend.max_rows - running, room // reserve)
            if k <= 0:
                if running:
                    return
                k = 1  # nothing runs: one row, whatever the budget (if its keys and values fit at all)
                pool = self.state.smallest_pool()
                if group.live == 0 and blocks(len(group.ids)) + reserve > pool:
                    raise UserError(
                        f"a prompt of {len(group.ids):,} tokens and {self.config.max_new_tokens:,} new ones "
                        f"do not fit the key/value pool ({self.state.block * pool:,} tokens)"
                    )
            if group.held is None:
                self._prefill(group)
            for _ in range(k):
                req = group.waiting.popleft()
                row = _Row(
                    req, group, self._generator(req.seed), time.perf_counter(), self.state.add_row(group.held)
                )
                if self.on_tokens is not None:
                    row.stream = TextStream(req.stop)
                self.rows.append(row)
                group.live += 1
                token = self.sampler.pick(group.logits[None], [row.generator])[0]
                self._take(row, token, group.logits, finished)
            if not group.waiting:
                group.logits = None
                queue.popleft()
                if group.live == 0:
                    self._release(group)
            if not self._tell():  # a prompt's first tokens are heard at once, not after the next prefill
                return

    def _generator(self, seed: int) -> object:
        import torch

        return torch.Generator().manual_seed(seed)

    def _prefill(self, group: _Group) -> None:
        """Encode a prompt once into its key/value blocks; keep its next-token logits for its samples."""
        import torch

        start = time.perf_counter()
        group.held = self.state.add_prompt(len(group.ids))
        self.state.begin_prefill(group.held)
        try:
            ids = torch.tensor([group.ids], device=self.model.device)
            out = self.model(input_ids=ids, kv_state=self.state, use_cache=False, logits_to_keep=1)
        finally:
            self.state.end_prefill()
        group.logits = out.logits[0, -1].float()
        stats = self.stats
        stats.prefills += 1
        stats.prefill_tokens += len(group.ids)
        stats.longest_prefill = max(stats.longest_prefill, len(group.ids))
        stats.prefill_seconds += time.perf_counter() - start

    def _take(self, row: _Row, token: int, logits: object, finished: list[Result]) -> None:
        """Record a drawn token; a row that ended leaves at once; the callback hears of both."""
        done = self._record(row, token)
        result = self._finish(row) if done else None
        if result is not None:
            finished.append(result)
        if row.stream is not None:
            text = row.stream.piece(self._text(row), final=done)
            self.events.append(TokenEvent(row.request, token, text, logits.float(), result))

    def _text(self, row: _Row) -> str:
        """A row's decoded text so far (up to its eos)."""
        ids = row.tokens[:-1] if row.tokens and row.tokens[-1] in self.eos else row.tokens
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _record(self, row: _Row, token: int) -> bool:
        """Append a token; True when the row is done (eos, a stop string, or the cap)."""
        row.tokens.append(token)
        if token in self.eos:
            row.stopped_by = "eos"
        elif self._hits_stop(row):
            row.stopped_by = "stop"
        elif len(row.tokens) >= self.config.max_new_tokens:
            row.stopped_by = "length"
        return bool(row.stopped_by)

    def _hits_stop(self, row: _Row) -> bool:
        """Whether the row's last tokens complete one of its stop strings."""
        stops = row.request.stop
        if not stops:
            return False
        if stops not in self.windows:
            tok = self.tokenizer
            self.windows[stops] = max(len(tok(s, add_special_tokens=False)["input_ids"]) for s in stops) + 4
        tail = self.tokenizer.decode(row.tokens[-self.windows[stops] :])
        return any(s in tail for s in stops)

    def _finish(self, row: _Row, stopped_by: str | None = None) -> Result:
        """The finished row's result; its key/value blocks are free at once."""
        self.rows.remove(row)
        self.state.drop_row(row.held)
        group = row.group
        group.live -= 1
        if group.live == 0 and not group.waiting:
            self._release(group)
        answer, n_new, ended = finish_row(row.tokens, self.tokenizer, row.request.stop, self.eos, None)
        seconds = time.perf_counter() - row.started
        return Result(row.request, answer, len(group.ids), n_new, stopped_by or ended, seconds)

    def _cancel(self, queue: deque[_Group]) -> list[Result]:
        """The callback said stop: every running row ends as it is, every queued one with no answer."""
        results = []
        for row in list(self.rows):
            results.append(self._finish(row, CANCELLED))
            if row.stream is not None:
                self.events.append(
                    TokenEvent(row.request, None, row.stream.piece(self._text(row), True), None, results[-1])
                )
        if self.events:
            events, self.events = self.events, []
            self.on_tokens(events)  # the rows' ends (what it returns no longer matters)
        for group in queue:
            results += [Result(req, "", len(group.ids), 0, CANCELLED, 0.0) for req in group.waiting]
            group.waiting.clear()
            self._release(group)
        queue.clear()
        return results

    def _release(self, group: _Group) -> None:
        """A group with no rows left frees its blocks."""
        if group.held is not None:
            self.state.drop_prompt(group.held)
            group.held = None
