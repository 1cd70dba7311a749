"""Demonstration selection: top-k or random candidates, the paper's token-budget packing, ordering.

Every retrieval records, for each candidate, why it was kept or skipped:

- ``kept``: added to the prompt
- ``over_instance_limit``: its formatted text is longer than ``max_per_instance_tokens``
- ``over_budget``: adding it would pass ``max_tokens``; packing stops here (the paper's rule)
- ``after_stop``: ranked below the first overflow, never considered
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import polars as pl

from . import prompts
from .embed import Encoder, embed_pool, normalize_rows
from .errors import UserError


@dataclass(frozen=True)
class RetrievalConfig:
    """How demonstrations are chosen, packed and ordered, and which template wraps them."""

    method: str = "retrieve"  # retrieve | random | zero-shot | urial
    max_k: int = 20  # candidates considered, best first
    max_tokens: int = 3000  # running total of demo tokens allowed
    max_per_instance_tokens: int = 500  # a longer formatted demo is skipped
    similarity: str = "dot"  # dot (the paper: unnormalised) | cosine
    most_relevant_last: bool = True  # the paper reverses the kept list
    seed: int = 0  # random method: seed for the uniform draw
    urial_path: str | None = None  # urial method: prompt file (None: the project's own)


PRESETS: dict[str, RetrievalConfig] = {
    "paper": RetrievalConfig(),
    "paper-short": RetrievalConfig(max_tokens=1000),  # the reference's Llama-1 "short" mode
    "paper-cosine": RetrievalConfig(similarity="cosine"),  # deviation: L2-normalised scores
    "random": RetrievalConfig(method="random"),
    "zero-shot": RetrievalConfig(method="zero-shot"),
    "urial": RetrievalConfig(method="urial"),
}


def get_preset(name: str, **overrides: object) -> RetrievalConfig:
    """A named preset, with fields overridden (unknown names give one clear line)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}'; presets: {', '.join(PRESETS)}")
    config = replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    if config.similarity not in {"dot", "cosine"}:
        raise UserError(f"unknown similarity '{config.similarity}' (dot, cosine)")
    if config.max_k < 1 or config.max_tokens < 0 or config.max_per_instance_tokens < 0:
        raise UserError("max_k must be >= 1 and token budgets >= 0")
    return config


@dataclass
class Candidate:
    """One considered demonstration and what packing decided about it."""

    id: str
    rank: int
    score: float | None
    n_tokens: int
    kept: bool
    reason: str


@dataclass
class Retrieval:
    """The prompt built for one query, with the demos chosen and the candidates weighed."""

    query_id: str
    query: str
    preset: str
    demo_ids: list[str]
    candidates: list[Candidate]
    prompt: str
    stop: list[str]
    budget: int = 0
    sample: int = 0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The record written by `icalign retrieve`."""
        out = asdict(self)
        out.pop("extra")
        out.pop("sample")
        return out


def pack(
    order: list[int], lengths: dict[int, int], config: RetrievalConfig, budget: int
) -> list[tuple[int, str]]:
    """The paper's packing walk over candidates best-first: (index, reason) for each."""
    decisions, total, stopped = [], 0, False
    for idx in order:
        n = lengths[idx]
        if stopped:
            decisions.append((idx, "after_stop"))
        elif n > config.max_per_instance_tokens:
            decisions.append((idx, "over_instance_limit"))
        elif total + n <= budget:
            total += n
            decisions.append((idx, "kept"))
        else:
            stopped = True
            decisions.append((idx, "over_budget"))
    return decisions


class Retriever:
    """Selects and packs demonstrations for many queries at once."""

    def __init__(
        self,
        pool: pl.DataFrame,
        config: RetrievalConfig,
        tokenizer: object,
        encoder: Encoder | None = None,
        preset_name: str = "paper",
    ) -> None:
        if pool.height == 0:
            raise UserError("the demonstration pool is empty")
        self.pool = pool
        self.config = config
        self.preset_name = preset_name
        self.tokenizer = tokenizer
        self.encoder = encoder
        self._ids = pool["id"].to_list()
        self._prompts = pool["prompt"].to_list()
        self._responses = pool["response"].to_list()
        self._lengths: dict[int, int] = {}
        self._emb: np.ndarray | None = None
        self._urial = prompts.read_urial_prefix(config.urial_path) if config.method == "urial" else None
        if config.method == "retrieve":
            self.encoder = encoder or Encoder()
            emb = embed_pool(pool, self.encoder)
            self._emb = normalize_rows(emb) if config.similarity == "cosine" else emb

    @property
    def stop(self) -> list[str]:
        """Stop strings of this method's template."""
        return list(prompts.URIAL_STOP if self.config.method == "urial" else prompts.PAPER_STOP)

    def demo_lengths(self, indices: set[int]) -> dict[int, int]:
        """Token counts of formatted demos, each computed once (one batched call for new ones)."""
        missing = sorted(i for i in indices if i not in self._lengths)
        if missing:
            texts = [prompts.demo_budget_text(self._prompts[i], self._responses[i]) for i in missing]
            ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            self._lengths.update({i: len(t) for i, t in zip(missing, ids, strict=True)})
        return self._lengths

    def candidates(
        self, queries: list[str], query_ids: list[str], sample: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Candidate indices (best first) and scores for each query: one encode, one top-k."""
        k = min(self.config.max_k, self.pool.height)
        if self.config.method == "random":
            if self.config.max_k > self.pool.height:
                raise UserError(
                    f"max_k={self.config.max_k} is larger than the pool ({self.pool.height} demos)"
                )
            rows = [
                random.Random(f"{self.config.seed}|{qid}|{sample}").sample(range(self.pool.height), k)
                for qid in query_ids
            ]
            return np.array(rows, dtype=np.int64).reshape(len(queries), k), None
        q = self.encoder.encode(queries)
        if self.config.similarity == "cosine":
            q = normalize_rows(q)
        scores = q @ self._emb.T
        if k < self.pool.height:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.tile(np.arange(self.pool.height), (len(queries), 1))
        top_scores = np.take_along_axis(scores, top, axis=1)
        # best first; ties broken by pool order, as a stable descending sort would
        order = np.lexsort((top, -top_scores), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        return top, np.take_along_axis(scores, top, axis=1)

    def retrieve(
        self, queries: pl.DataFrame, sample: int = 0, context_limit: int | None = None
    ) -> list[Retrieval]:
        """Build a prompt for every query (columns `id`, `prompt`).

        `context_limit` caps the prompt length in tokens (the model's context minus the answer's
        room): the demo budget shrinks for a query when budget + query would not fit.
        """
        qids, texts = queries["id"].to_list(), queries["prompt"].to_list()
        method = self.config.method
        if method in {"zero-shot", "urial"}:
            make = (
                prompts.zero_shot_prompt
                if method == "zero-shot"
                else (lambda q: prompts.urial_prompt(q, self._urial))
            )
            return [
                Retrieval(qid, q, self.preset_name, [], [], make(q), self.stop, 0, sample)
                for qid, q in zip(qids, texts, strict=True)
            ]
        top, scores = self.candidates(texts, qids, sample)
        lengths = self.demo_lengths(set(top.ravel().tolist()))
        budgets = self._budgets(texts, context_limit)
        out = []
        for row, (qid, q) in enumerate(zip(qids, texts, strict=True)):
            order = top[row].tolist()
            decisions = pack(order, lengths, self.config, budgets[row])
            cands = [
                Candidate(
                    self._ids[idx],
                    rank + 1,
                    None if scores is None else float(scores[row, rank]),
                    lengths[idx],
                    reason == "kept",
                    reason,
                )
                for rank, (idx, reason) in enumerate(decisions)
            ]
            kept = [idx for idx, reason in decisions if reason == "kept"]
            if self.config.most_relevant_last:
                kept.reverse()
            prompt = prompts.icl_prompt(q, [(self._prompts[i], self._responses[i]) for i in kept])
            out.append(
                Retrieval(
                    qid,
                    q,
                    self.preset_name,
                    [self._ids[i] for i in kept],
                    cands,
                    prompt,
                    self.stop,
                    budgets[row],
                    sample,
                )
            )
        return out

    def _budgets(self, texts: list[str], context_limit: int | None) -> list[int]:
        """Per-query demo budget: the configured one, shrunk where the prompt must fit a context."""
        if context_limit is None:
            return [self.config.max_tokens] * len(texts)
        query_texts = [prompts.QUERY_TEMPLATE.format(query=t) for t in texts]
        n_query = [len(ids) for ids in self.tokenizer(query_texts, add_special_tokens=False)["input_ids"]]
        budgets = [min(self.config.max_tokens, context_limit - n) for n in n_query]
        for text, budget in zip(texts, budgets, strict=True):
            if budget < 0:
                raise UserError(f"query is longer than the model's context allows: {text[:60]!r}…")
        return budgets
