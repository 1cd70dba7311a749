"""The transformers backend: continuous batching on a local model, prompts encoded once, stops in flight.

Rows run together in one batch. Each distinct prompt is prefilled once (batch 1, no padding) and
its keys and values are shared by all its samples; a row that hits a stop string, eos or the cap
leaves at once and its slot is refilled from the queue in the same step. How many rows run is set
by a token budget (prompt tokens held plus `max_new_tokens` reserved per row), capped by
`max_rows`. Every (seed, query, sample) draws from its own generator, one uniform per token, so a
row's answer does not depend on what else is in the batch (exactly in float32; bfloat16 matmuls
may round differently in another batch).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..errors import UserError
from ..retrieval.prompts import clean_answer
from .types import GenerationConfig, Request, Result

MAX_ROWS = 32  # default cap on rows decoded together
TOKEN_BUDGET = 131_072  # default: prompt tokens held + max_new_tokens per running row (32 rows of 3k+256)


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
    each row's own generator (inverse CDF over the kept tokens); temperature 0 is greedy."""

    def __init__(self, config: GenerationConfig) -> None:
        self.config = config

    def pick(self, logits: object, generators: Sequence[object]) -> list[int]:
        """One token per row of `logits` [rows, vocab] (float32)."""
        import torch

        config = self.config
        if len(generators) != logits.shape[0]:
            raise ValueError(f"{logits.shape[0]} rows of logits but {len(generators)} generators")
        if config.greedy:
            return logits.argmax(dim=-1).tolist()
        logits = logits / config.temperature
        k = config.effective_top_k
        if k and k < logits.shape[-1]:
            values, index = torch.topk(logits, k, dim=-1)
        else:
            values, index = torch.sort(logits, dim=-1, descending=True)
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
    slot: int | None = None  # group slot while its keys and values are held
    logits: object = None  # the prompt's next-token logits, kept while samples wait
    live: int = 0  # rows running


@dataclass
class _Row:
    """A running (query, sample)."""

    request: Request
    group: _Group
    generator: object
    started: float
    tokens: list[int] = field(default_factory=list)
    how: str = ""


@dataclass
class LoopStats:
    """Where a `generate` call spent its time (read by the benchmark)."""

    prefills: int = 0
    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    steps: int = 0
    row_steps: int = 0  # tokens decoded by live rows
    decode_seconds: float = 0.0
    max_rows: int = 0


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
    ) -> None:
        from ..models.loading import load_model, load_tokenizer
        from ..models.tokens import prompt_bos
        from .attention import NAME, register

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
        if self.model.config._attn_implementation != NAME:
            self.model.set_attn_implementation(NAME)  # a drop-in for SDPA outside this loop
        self.bos = prompt_bos(model_name, self.tokenizer)
        self.stats = LoopStats()

    @property
    def dtype(self) -> str:
        """The model's dtype name (`bfloat16`, `float32`)."""
        return str(self.model.dtype).removeprefix("torch.")

    def encode(self, prompt: str) -> list[int]:
        """A prompt's token ids as this model sees them (BOS by the model's rule)."""
        from ..models.tokens import encode_prompts

        return encode_prompts(self.tokenizer, [prompt], self.bos)[0]

    def generate(self, requests: Sequence[Request], config: GenerationConfig) -> Iterator[list[Result]]:
        """Yield the rows that finished at each step (every request exactly once)."""
        self.stats = LoopStats()
        yield from _Loop(self, config).run(requests)

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

    def __init__(self, backend: TransformersBackend, config: GenerationConfig) -> None:
        self.backend, self.config = backend, config
        self.model, self.tokenizer = backend.model, backend.tokenizer
        self.sampler = Sampler(config)
        self.eos = backend.eos_ids()
        self.stats = backend.stats
        self.windows: dict[tuple[str, ...], int] = {}
        self.rows: list[_Row | None] = []
        self.groups: list[_Group | None] = []
        self.state = None

    def run(self, requests: Sequence[Request]) -> Iterator[list[Result]]:
        """The decode loop."""
        import torch

        from .attention import KVState

        queue = self._groups(requests)
        if not queue:
            return
        width = max(len(g.ids) for g in queue)
        self.state = KVState(self.model, 0, 0, width, device=self.model.device)
        while queue or any(self.rows):
            with torch.inference_mode():
                finished = self._advance(queue)
            if finished:
                yield finished

    def _advance(self, queue: deque[_Group]) -> list[Result]:
        """Admit what fits, then one decode step of every running row; the rows that finished."""
        import torch

        finished: list[Result] = []
        self._admit(queue, finished)
        live = [i for i, r in enumerate(self.rows) if r is not None]
        if live and len(live) <= 0.75 * len(self.rows):
            self._compact(live)
            live = list(range(len(live)))
        if not live:
            return finished
        start = time.perf_counter()
        self.state.begin_step(live)
        device = self.model.device
        tokens = torch.tensor([r.tokens[-1] if r else 0 for r in self.rows], device=device)
        out = self.model(
            input_ids=tokens[:, None],
            position_ids=self.state.positions().to(device),
            kv_state=self.state,
            use_cache=False,
        )
        self.state.end_step(live)
        picked = self.sampler.pick(out.logits[live, -1].float(), [self.rows[i].generator for i in live])
        for slot, token in zip(live, picked, strict=True):
            if self._record(self.rows[slot], token):
                finished.append(self._finish(slot))
        stats = self.stats
        stats.steps += 1
        stats.row_steps += len(live)
        stats.max_rows = max(stats.max_rows, len(live))
        stats.decode_seconds += time.perf_counter() - start
        return finished

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
        """Tokens the running batch holds against the budget."""
        held = sum(len(g.ids) for g in self.groups if g is not None)
        rows = sum(r is not None for r in self.rows)
        return held + rows * self.config.max_new_tokens

    def _admit(self, queue: deque[_Group], finished: list[Result]) -> None:
        """Start queued rows while the budget and the row cap allow (at least one if nothing runs)."""
        reserve = self.config.max_new_tokens
        while queue:
            group = queue[0]
            running = sum(r is not None for r in self.rows)
            room = self.backend.token_budget - self._used() - (len(group.ids) if group.slot is None else 0)
            k = min(len(group.waiting), self.backend.max_rows - running, room // reserve)
            if k <= 0:
                if running or group.live:
                    return
                k = 1  # nothing runs: one row, whatever the budget
            if group.slot is None:
                self._prefill(group)
            free = self._free_rows(k)
            for slot in free:
                req = group.waiting.popleft()
                row = _Row(req, group, self._generator(req.seed), time.perf_counter())
                self.rows[slot] = row
                self.state.place_row(slot, group.slot)
                group.live += 1
                token = self.sampler.pick(group.logits[None], [row.generator])[0]
                if self._record(row, token):
                    finished.append(self._finish(slot))
            if not group.waiting:
                group.logits = None
                queue.popleft()
                if group.live == 0:
                    self._release(group)

    def _generator(self, seed: int) -> object:
        import torch

        return torch.Generator().manual_seed(seed)

    def _prefill(self, group: _Group) -> None:
        """Encode a prompt once into a group slot; keep its next-token logits for its samples."""
        import torch

        start = time.perf_counter()
        free = [i for i, g in enumerate(self.groups) if g is None]
        if not free:
            self.state.add_slots(groups=1)
            self.groups.append(None)
            free = [len(self.groups) - 1]
        group.slot = free[0]
        self.groups[group.slot] = group
        self.state.begin_prefill(group.slot, len(group.ids))
        try:
            ids = torch.tensor([group.ids], device=self.model.device)
            out = self.model(input_ids=ids, kv_state=self.state, use_cache=False, logits_to_keep=1)
        finally:
            self.state.end_prefill()
        group.logits = out.logits[0, -1].float()
        self.stats.prefills += 1
        self.stats.prefill_tokens += len(group.ids)
        self.stats.prefill_seconds += time.perf_counter() - start

    def _free_rows(self, k: int) -> list[int]:
        """`k` empty row slots (the batch grows by the shortfall)."""
        free = [i for i, r in enumerate(self.rows) if r is None][:k]
        if len(free) < k:
            grow = k - len(free)
            self.state.add_slots(rows=grow)
            free += range(len(self.rows), len(self.rows) + grow)
            self.rows.extend([None] * grow)
        return free

    def _record(self, row: _Row, token: int) -> bool:
        """Append a token; True when the row is done (eos, a stop string, or the cap)."""
        row.tokens.append(token)
        if token in self.eos:
            row.how = "eos"
        elif self._hits_stop(row):
            row.how = "stop"
        elif len(row.tokens) >= self.config.max_new_tokens:
            row.how = "length"
        return bool(row.how)

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

    def _finish(self, slot: int) -> Result:
        """The finished row's result; its slot is free at once."""
        row = self.rows[slot]
        self.rows[slot] = None
        self.state.free_row(slot)
        group = row.group
        group.live -= 1
        if group.live == 0 and not group.waiting:
            self._release(group)
        answer, n_new, how = finish_row(row.tokens, self.tokenizer, row.request.stop, self.eos, None)
        seconds = time.perf_counter() - row.started
        return Result(row.request, answer, len(group.ids), n_new, how, seconds)

    def _release(self, group: _Group) -> None:
        """A group with no rows left frees its slot."""
        if group.slot is not None:
            self.groups[group.slot] = None
            group.slot = None

    def _compact(self, live: list[int]) -> None:
        """Drop empty row and group slots from the batch (rows and prompts move to the front)."""
        groups = [i for i, g in enumerate(self.groups) if g is not None]
        self.state.compact(live, groups)
        self.rows = [self.rows[i] for i in live]
        self.groups = [self.groups[i] for i in groups]
        for new, group in enumerate(self.groups):
            group.slot = new
