"""The workshop's live playground: any question, answered by the study's base model twice — directly and
with retrieved demos — in one continuous batch of the same engine every run uses, each answer streamed
as its tokens arrive, and stoppable.

The controller holds what is slow to build (the model, each pool's retriever) across questions; the
widgets that show it live in `views/playground.py`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from ..errors import UserError
from ..generation.backends import make_backend
from ..generation.streaming import TokenEvent
from ..generation.transformers_backend import TransformersBackend
from ..generation.types import GenerationConfig, Request, Result, item_seed
from ..models.loading import context_length
from ..retrieval import prompts
from ..retrieval.retriever import Retrieval, Retriever
from ..retrieval.settings import build_retriever
from .study import Study

DIRECT, IN_CONTEXT = "direct prompt (zero-shot)", "in-context alignment"  # the two columns, in order
ALL_THAT_FIT = 20  # the most demos a question can keep (the paper's candidates): all that fit the budget


@dataclass
class Stream:
    """One answer as it arrives: the text shown so far, tokens drawn, and its result once it ended."""

    text: str = ""
    tokens: int = 0
    result: Result | None = None
    first_token_at: float | None = None  # seconds after the request, when its first token came


@dataclass
class Asked:
    """One question in the playground: its retrieval, the two answers as they stream, and a Stop."""

    question: str
    retrieval: Retrieval
    pool: pl.DataFrame  # the pool its demos came from (for the candidate table)
    max_new_tokens: int  # each answer's cap (its prompt left room for it)
    streams: dict[str, Stream] = field(default_factory=lambda: {DIRECT: Stream(), IN_CONTEXT: Stream()})
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> bool:
        """Both answers ended."""
        return all(s.result is not None for s in self.streams.values())


class Playground:
    """Ask the study's base model anything; see both answers stream side by side."""

    def __init__(self, study: Study) -> None:
        if study.backend != "transformers":
            raise UserError(
                f"the playground streams through the transformers backend (the study's is {study.backend})"
            )
        self.study = study
        self._backend: TransformersBackend | None = None
        self._retrievers: dict[str, Retriever] = {}  # by pool

    def backend(self) -> TransformersBackend:
        """The model, loaded once for every question."""
        if self._backend is None:
            options = {"batch_size": self.study.batch_size, "dtype": "auto"}
            self._backend = make_backend("transformers", self.study.model, options)
        return self._backend

    def retriever(self, pool: str, demos: int) -> Retriever:
        """The paper's retriever over `pool` (built once per pool), keeping at most `demos` of the demos
        that fit."""
        if pool not in self._retrievers:
            settings = self.study.retrieval(pool=pool, preset="paper", tokenizer=self.study.model)
            self._retrievers[pool] = build_retriever(settings, self.study.data_dir, self.backend().tokenizer)
        base = self._retrievers[pool]
        return base.keeping(demos if demos < ALL_THAT_FIT else base.config.max_demos)

    def config(self, asked: Asked) -> GenerationConfig:
        """How both answers are sampled: the study's decoding, one sample each, the question's cap."""
        s = self.study
        return GenerationConfig(
            max_new_tokens=asked.max_new_tokens, temperature=s.temperature, samples=1, seed=s.seed
        )

    def prepare(
        self,
        question: str,
        pool: str | None = None,
        demos: int = ALL_THAT_FIT,
        max_new_tokens: int | None = None,
    ) -> Asked:
        """Retrieve and pack the demos for a question (its candidate table and prompt are then known);
        each answer may have `max_new_tokens` (the study's by default)."""
        text = question.strip()
        if not text:
            raise UserError("the question is empty: type a question first")
        cap = max_new_tokens or self.study.max_new_tokens
        room = context_length(self.study.model) - cap - int(self.backend().bos)
        if room < 64:
            raise UserError(f"{cap:,} new tokens leave no room for a prompt in the model's context")
        query = pl.DataFrame({"id": ["your-question"], "prompt": [text]})
        retriever = self.retriever(pool or self.study.pool, demos)
        return Asked(text, retriever.retrieve(query, context_limit=room)[0], retriever.pool, cap)

    def requests(self, asked: Asked) -> list[Request]:
        """The two rows of one continuous batch: the direct prompt and the in-context one."""
        seed = self.study.seed
        direct = prompts.zero_shot_prompt(asked.question)
        return [
            Request(DIRECT, 0, direct, prompts.PAPER_STOP, item_seed(seed, DIRECT, 0)),
            Request(
                IN_CONTEXT,
                0,
                asked.retrieval.prompt,
                tuple(asked.retrieval.stop),
                item_seed(seed, IN_CONTEXT, 0),
            ),
        ]

    def answer(
        self, asked: Asked, on_update: Callable[[Asked, str], None] | None = None
    ) -> dict[str, Result]:
        """Decode both answers together, calling `on_update(asked, column)` whenever a column got new
        text or ended; `asked.stop` set (from any thread) ends both at the next step. The results by
        column."""

        def heard(events: list[TokenEvent]) -> bool:
            now = time.perf_counter() - asked.started
            for event in events:
                stream = asked.streams[event.request.query_id]
                if event.token is not None:
                    stream.tokens += 1
                    if stream.first_token_at is None:
                        stream.first_token_at = now
                stream.text += event.text
                stream.result = event.result or stream.result
                if on_update is not None and (event.text or event.result is not None):
                    on_update(asked, event.request.query_id)
            return not asked.stop.is_set()

        results = {}
        for batch in self.backend().generate(self.requests(asked), self.config(asked), on_tokens=heard):
            for result in batch:
                results[result.request.query_id] = result
                stream = asked.streams[result.request.query_id]
                if stream.result is None:  # ended with no event (e.g. cancelled before its first token)
                    stream.result = result
                    if on_update is not None:
                        on_update(asked, result.request.query_id)
        return results
