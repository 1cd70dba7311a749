"""The offline reference-guided embedding judge, and a per-text embedding cache.

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

import io
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..embed import Encoder, normalize_rows
from ..errors import UserError
from ..files import atomic_write_bytes, cache_dir, sha256_text
from .cache import Comparison, Reply
from .spec import JudgeSpec


@dataclass
class TextEmbeddingCache:
    """Embeddings of single texts for one encoder, stored as shards under the cache directory."""

    encoder: Encoder
    root: Path | None = None
    chunk: int = 512  # texts encoded (and written) per shard
    _vectors: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        base = Path(self.root) if self.root is not None else cache_dir()
        self.folder = base / "text_embeddings" / sha256_text(self.encoder.key)[:24]
        for shard in sorted(self.folder.glob("*.npz")) if self.folder.exists() else []:
            with np.load(shard) as data:
                for key, vec in zip(data["keys"].tolist(), data["vectors"], strict=True):
                    self._vectors[key] = vec

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Rows of embeddings for `texts`, encoding (and caching) only the ones not seen before."""
        keys = [sha256_text(t)[:32] for t in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._vectors:
                missing.setdefault(key, text)
        todo = list(missing.items())
        for start in range(0, len(todo), self.chunk):
            part = todo[start : start + self.chunk]
            vectors = self.encoder.encode([text for _, text in part])
            self._write_shard([key for key, _ in part], vectors)
            for (key, _), vec in zip(part, vectors, strict=True):
                self._vectors[key] = vec
            if progress is not None:
                progress(start + len(part))
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys])

    def _write_shard(self, keys: list[str], vectors: np.ndarray) -> None:
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(keys), vectors=vectors.astype(np.float32))
        atomic_write_bytes(self.folder / f"{uuid.uuid4().hex}.npz", buf.getvalue())


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
    cache_root: Path | None = None
    _store: TextEmbeddingCache | None = field(default=None, init=False, repr=False)

    def store(self) -> TextEmbeddingCache:
        """The text embedding cache of this judge's encoder (created once)."""
        if self._store is None:
            encoder = Encoder(name=self.spec.model, max_length=self.spec.max_length)
            self._store = TextEmbeddingCache(encoder, self.cache_root)
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
                "pass --reference BASELINE (e.g. chatgpt) or a file of reference answers"
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
