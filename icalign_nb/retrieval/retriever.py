"""Demonstration selection: top-k or random candidates, the paper's token-budget packing, ordering.

Every retrieval records, for each candidate, why it was kept or skipped:

- ``kept``: added to the prompt
- ``over_instance_limit``: its formatted text is longer than ``max_demo_tokens``
- ``over_budget``: adding it would pass ``demo_budget``; packing stops here (the paper's rule)
- ``after_stop``: ranked below the first overflow, never considered
- ``over_k``: packed, but past the first ``max_demos`` (the k-sweep ablations)
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ..cache import cache_path, damaged
from ..errors import UserError
from ..files import atomic_write_text, sha256_text
from . import prompts
from .embeddings import embed_pool, normalize_rows
from .encoders import Encoder
from .presets import RetrievalConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


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

    def to_json(self) -> dict:
        """The record written by `icalign retrieve` (and, with its sample, into a run's retrievals)."""
        out = asdict(self)
        out.pop("sample")
        return out

    @classmethod
    def from_json(cls, obj: dict) -> Retrieval:
        """A retrieval from its record (the inverse of `to_json`)."""
        fields = {k: obj[k] for k in ("query_id", "query", "preset", "demo_ids", "prompt", "stop")}
        candidates = [Candidate(**c) for c in obj["candidates"]]
        return cls(
            **fields, candidates=candidates, budget=int(obj.get("budget", 0)), sample=obj.get("sample") or 0
        )

    @property
    def mean_similarity(self) -> float | None:
        """The mean retrieval score of the kept demos (None without scores or demos)."""
        scores = [c.score for c in self.candidates if c.kept and c.score is not None]
        return sum(scores) / len(scores) if scores else None


def pack(
    order: list[int], lengths: dict[int, int], config: RetrievalConfig, budget: int
) -> list[tuple[int, str]]:
    """The paper's packing walk over candidates best-first: (index, reason) for each."""
    decisions, total, stopped = [], 0, False
    for idx in order:
        n = lengths[idx]
        if stopped:
            decisions.append((idx, "after_stop"))
        elif n > config.max_demo_tokens:
            decisions.append((idx, "over_instance_limit"))
        elif total + n <= budget:
            total += n
            decisions.append((idx, "kept"))
        else:
            stopped = True
            decisions.append((idx, "over_budget"))
    return decisions


def keep_at_most(decisions: list[tuple[int, str]], config: RetrievalConfig) -> list[tuple[int, str]]:
    """The `max_demos` ablation: packed demos past the first k (best-ranked) become `over_k`."""
    if config.max_demos is None:
        return decisions
    out, kept = [], 0
    for idx, reason in decisions:
        if reason == "kept":
            kept += 1
            if kept > config.max_demos:
                reason = "over_k"
        out.append((idx, reason))
    return out


def derangement(n: int, seed: str) -> list[int]:
    """A seeded permutation of range(n) that moves every position (one random cycle); n < 2 stays."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    successor = {order[i]: order[(i + 1) % n] for i in range(n)}
    return [successor[i] for i in range(n)]


def tokenizer_key(tokenizer: PreTrainedTokenizerBase) -> str:
    """What identifies a tokenizer for the length cache: its full definition, not where it was loaded from."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return sha256_text(type(tokenizer).__name__, definition)


def demo_token_lengths(
    pool: pl.DataFrame, tokenizer: PreTrainedTokenizerBase, use_cache: bool = True
) -> list[int]:
    """Token count of each demo's budget text (the paper counts demo + separator, no special tokens)."""
    path = cache_path(
        "lengths",
        *pool["prompt"].to_list(),
        "\1",
        *pool["response"].to_list(),
        tokenizer_key(tokenizer),
        suffix=".json",
    )
    if use_cache and path.is_file():
        try:
            lengths = json.loads(path.read_bytes())
        except ValueError:
            lengths = None
        if (
            isinstance(lengths, list)
            and len(lengths) == pool.height
            and all(isinstance(n, int) for n in lengths)
        ):
            return lengths
        damaged(path, "not a list of the pool's demo lengths")  # computed again below
    texts = [prompts.demo_budget_text(p, r) for p, r in zip(pool["prompt"], pool["response"], strict=True)]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    if use_cache:
        atomic_write_text(path, json.dumps(lengths))
    return lengths


def check_pool_size(config: RetrievalConfig, pool: pl.DataFrame) -> None:
    """Refuse a candidate count larger than the pool."""
    if config.method in {"retrieve", "random"} and config.max_k > pool.height:
        raise UserError(f"max_k={config.max_k} is larger than the pool ({pool.height} demos)")


class Retriever:
    """Selects and packs demonstrations for many queries at once."""

    def __init__(
        self,
        pool: pl.DataFrame,
        config: RetrievalConfig,
        tokenizer: PreTrainedTokenizerBase,
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
        self._lengths: list[int] | None = None
        self._emb: np.ndarray | None = None
        self._urial = prompts.read_urial_prefix(config.urial_prompt) if config.method == "urial" else None
        check_pool_size(config, pool)
        if config.method == "retrieve":
            self.encoder = encoder or Encoder()
            emb = embed_pool(pool, self.encoder)
            self._emb = normalize_rows(emb) if config.similarity == "cosine" else emb

    def keeping(self, max_demos: int | None) -> Retriever:
        """This retriever keeping at most `max_demos` of the demos that fit (None: all), its pool's
        embeddings and token counts shared, not computed again."""
        self.demo_lengths()
        other = copy.copy(self)
        other.config = replace(self.config, max_demos=max_demos)
        return other

    @property
    def stop(self) -> list[str]:
        """Stop strings of this method's template."""
        return list(prompts.URIAL_STOP if self.config.method == "urial" else prompts.PAPER_STOP)

    def demo_lengths(self) -> list[int]:
        """Token counts of every formatted demo, computed once per pool and tokenizer (cached on disk)."""
        if self._lengths is None:
            self._lengths = demo_token_lengths(self.pool, self.tokenizer)
        return self._lengths

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Query embeddings in one batched call (normalised for cosine)."""
        q = self.encoder.encode(texts)
        return normalize_rows(q) if self.config.similarity == "cosine" else q

    def rank(self, query_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top `max_k` pool indices per query, best first, and their scores: one product, one top-k."""
        k = self.config.max_k
        scores = query_emb @ self._emb.T
        if k < self.pool.height:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.tile(np.arange(self.pool.height), (len(query_emb), 1))
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)  # best first; ties by pool order
        top = np.take_along_axis(top, order, axis=1)
        return top, np.take_along_axis(scores, top, axis=1)

    def random_candidates(self, query_ids: list[str], sample: int) -> np.ndarray:
        """The random control: `max_k` demos drawn uniformly, seeded by (seed, query, sample)."""
        rows = [
            random.Random(f"{self.config.seed}|{qid}|{sample}").sample(
                range(self.pool.height), self.config.max_k
            )
            for qid in query_ids
        ]
        return np.array(rows, dtype=np.int64).reshape(len(query_ids), self.config.max_k)

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
            return [
                Retrieval(qid, q, self.preset_name, [], [], self._fixed_prompt(q), self.stop, 0, sample)
                for qid, q in zip(qids, texts, strict=True)
            ]
        if method == "random":
            top, scores = self.random_candidates(qids, sample), None
        else:
            top, scores = self.rank(self.encode_queries(texts))
        budgets = self._budgets(texts, context_limit)
        out = self.assemble(qids, texts, top, scores, budgets, sample)
        if context_limit is None:
            return out
        for _ in range(8):  # demos counted one by one can tokenize a little longer joined: shrink to fit
            over = self._overshoot([r.prompt for r in out], context_limit)
            rows = [i for i, n in enumerate(over) if n > 0]
            if not rows:
                return out
            for i in rows:
                budgets[i] -= over[i]
                out[i] = self.assemble(
                    [qids[i]], [texts[i]], top[i : i + 1], _row(scores, i), [budgets[i]], sample
                )[0]
        raise UserError(
            f"query {qids[rows[0]]}: its prompt does not fit the model's context of {context_limit} tokens"
        )

    def _overshoot(self, prompt_texts: list[str], context_limit: int) -> list[int]:
        """How many tokens each prompt is over the limit (0 when it fits)."""
        ids = self.tokenizer(prompt_texts, add_special_tokens=False)["input_ids"]
        return [max(0, len(x) - context_limit) for x in ids]

    def _fixed_prompt(self, query: str) -> str:
        """The prompt of a method without demos chosen per query."""
        if self.config.method == "urial":
            return prompts.urial_prompt(query, self._urial)
        return prompts.zero_shot_prompt(query)

    def assemble(
        self,
        qids: list[str],
        texts: list[str],
        top: np.ndarray,
        scores: np.ndarray | None,
        budgets: list[int],
        sample: int = 0,
    ) -> list[Retrieval]:
        """Pack each query's candidates and build its prompt, recording every decision."""
        lengths = self.demo_lengths()
        out = []
        for row, (qid, q) in enumerate(zip(qids, texts, strict=True)):
            decisions = keep_at_most(pack(top[row].tolist(), lengths, self.config, budgets[row]), self.config)
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
            prompt = self._render(qid, q, kept)
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

    def _render(self, qid: str, query: str, kept: list[int]) -> str:
        """The prompt around the kept demos (in prompt order), with the preset's ablation if any."""
        config = self.config
        answers = [self._responses[i] for i in kept]
        if config.shuffle_answers:
            answers = [answers[j] for j in derangement(len(kept), f"{config.seed}|{qid}|answers")]
        demos = [(self._prompts[i], a) for i, a in zip(kept, answers, strict=True)]
        system = prompts.SYSTEM_TEXT if config.system_text else None
        return prompts.icl_prompt(query, demos, config.demo_content, system)

    def _budgets(self, texts: list[str], context_limit: int | None) -> list[int]:
        """Per-query demo budget: the configured one, shrunk where the prompt must fit a context."""
        if context_limit is None:
            return [self.config.demo_budget] * len(texts)
        query_texts = [prompts.QUERY_TEMPLATE.format(query=t) for t in texts]
        n_query = [len(ids) for ids in self.tokenizer(query_texts, add_special_tokens=False)["input_ids"]]
        budgets = [min(self.config.demo_budget, context_limit - n) for n in n_query]
        for text, budget in zip(texts, budgets, strict=True):
            if budget < 0:
                raise UserError(f"query is longer than the model's context allows: {text[:60]!r}…")
        return budgets


def _row(scores: np.ndarray | None, i: int) -> np.ndarray | None:
    """Row `i` of a score matrix kept two-dimensional (None stays None)."""
    return None if scores is None else scores[i : i + 1]
