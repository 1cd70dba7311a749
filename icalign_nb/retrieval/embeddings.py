"""One per-text embedding cache: pool prompts, queries' answers, references — texts through one encoder.

Each encoder (identified by its content and truncation length) has a folder of shards under the
cache root; a shard holds the keys (hashes of the texts) and their vectors, written atomically, so
a killed run keeps every finished shard and never a torn one.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..cache import cache_key, cache_path, damaged, load_arrays
from ..files import atomic_write_bytes
from .encoders import Encoder


@dataclass
class TextEmbeddingCache:
    """Embeddings of single texts for one encoder, read from and added to the cache."""

    encoder: Encoder
    chunk: int = 512  # texts encoded (and written) per shard
    _vectors: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.folder = cache_path("embeddings", self.encoder.key)
        width = None
        for shard in sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []:
            data = load_arrays(shard, ("keys", "vectors"))
            if data is None:
                continue
            keys, vectors = data["keys"], data["vectors"]
            if (
                vectors.ndim != 2
                or len(keys) != len(vectors)
                or vectors.shape[1] != (width or vectors.shape[1])
            ):
                damaged(shard, f"{len(keys)} keys, vectors of shape {vectors.shape}")
                continue
            width = vectors.shape[1]
            self._vectors.update(zip(keys.tolist(), vectors, strict=True))

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Rows of embeddings for `texts`, encoding (and caching) only the ones not seen before."""
        keys = [cache_key(t) for t in texts]
        missing = dict.fromkeys(k for k in keys if k not in self._vectors)
        todo = [(k, t) for k, t in dict(zip(keys, texts, strict=True)).items() if k in missing]
        for start in range(0, len(todo), self.chunk):
            part = todo[start : start + self.chunk]
            vectors = self.encoder.encode([text for _, text in part])
            self._write_shard([key for key, _ in part], vectors)
            self._vectors.update(zip((key for key, _ in part), vectors, strict=True))
            if progress is not None:
                progress(start + len(part))
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys])

    def _write_shard(self, keys: list[str], vectors: np.ndarray) -> None:
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(keys), vectors=vectors.astype(np.float32))
        atomic_write_bytes(self.folder / f"{uuid.uuid4().hex}.npz", buf.getvalue())


def embed_pool(pool: pl.DataFrame, encoder: Encoder) -> np.ndarray:
    """Embeddings of the pool's prompts (what the paper's retriever embeds), through the text cache."""
    return TextEmbeddingCache(encoder).embed(pool["prompt"].to_list())


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (for cosine similarity)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
