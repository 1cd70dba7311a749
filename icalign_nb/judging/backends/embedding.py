"""The offline reference-guided embedding judge (answers embedded through the per-text embedding cache).

An LLM this small cannot judge (SmolLM2-135M-Instruct never followed the two-score format and
picked position 1 whatever the answers), so the embedded default compares meaning instead:
each answer is cut to its first `max_length` tokens *by the encoder's own tokenizer* (256 for
MiniLM, special tokens included), embedded with mean pooling, and scored by its cosine
similarity to a reference answer for the same question. The answer closer to the reference
wins. **Draw margin**: when the two cosine similarities differ by no more than `margin`
(`--margin`), the comparison is a draw; margin 0 makes only exact ties draws. The default,
0.005, is the margin whose draw rate matches GPT-4's on the release: against davinci-003 GPT-4
calls 0.3-4.9% of comparisons a draw, this judge 1.2-7.5% at 0.005 (5-22% at 0.02), while its
agreement with GPT-4's decisive verdicts stays as at margin 0 (85/65/64/63% for zero-shot,
in-context retrieved, random, chat-13B). The scores recorded are the two cosines, so mean scores
are mean similarities to the reference.

It is a proxy. Measured on the release (reference = ChatGPT's answers, baseline = davinci-003,
first 256 tokens, margin 0): win rates 8.1% / 59.6% / 43.0% / 56.1% for Llama-2-13B zero-shot,
in-context (retrieved), in-context (random), Llama-2-chat-13B (GPT-4: 11.4 / 78.4 / 62.9 / 84.1),
agreeing with GPT-4 on 84.8% / 64.5% / 63.8% / 62.2% of its decisive verdicts
(`icalign judge-agreement`). Label its results as a proxy judge's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import UserError
from ...files import sha256_text
from ...retrieval.embeddings import TextEmbeddingCache, normalize_rows
from ...retrieval.encoders import Encoder
from ..comparisons import Comparison, Reply
from ..spec import JudgeSpec


def cosine_scores(system: np.ndarray, baseline: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(n, 2) cosine similarities of system and baseline rows to their reference rows."""
    ref = normalize_rows(reference)
    return np.stack(
        [(normalize_rows(system) * ref).sum(axis=1), (normalize_rows(baseline) * ref).sum(axis=1)], axis=1
    )


@dataclass
class EmbeddingJudge:
    """The answer whose embedding is closer to the reference answer's wins."""

    spec: JudgeSpec
    _store: TextEmbeddingCache | None = field(default=None, init=False, repr=False)

    def store(self) -> TextEmbeddingCache:
        """The text embedding cache of this judge's encoder (created once)."""
        if self._store is None:
            encoder = Encoder(name=self.spec.model, max_length=self.spec.max_length)
            self._store = TextEmbeddingCache(encoder)
        return self._store

    def prompt_hash(self, c: Comparison) -> str:
        """Hash of the three texts compared (question does not enter the score)."""
        return sha256_text(c.answer_1, c.answer_2, c.reference or "")

    def judge(self, items: Sequence[Comparison], done: Callable[[int, Reply], None]) -> None:
        """Score comparisons; each reply's scores are the two answers' cosines to the reference."""
        if not items:
            return
        lacking = next((c for c in items if not c.reference), None)
        if lacking is not None:
            raise UserError(
                f"the embedding judge needs a reference answer for every query "
                f"(none for {lacking.question[:60]!r}); "
                "give reference answers (reference: a baseline such as chatgpt, or a file)"
            )
        texts = [t for c in items for t in (c.answer_1, c.answer_2, c.reference)]
        emb = self.store().embed(texts)
        a1, a2, ref = emb[0::3], emb[1::3], emb[2::3]
        scores = cosine_scores(a1, a2, ref)
        for index, (s1, s2) in enumerate(scores.tolist()):
            raw = (
                f"{s1:.4f} {s2:.4f}\ncosine similarity to the reference answer of Assistants 1 and 2 "
                f"({self.spec.model}, first {self.spec.max_length} tokens)"
            )
            done(index, Reply(raw, (float(s1), float(s2))))
