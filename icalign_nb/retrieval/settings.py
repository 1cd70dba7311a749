"""The retrieval stage's one settings object, and the steps that turn it into a ready retriever."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from ..checks import in_range
from ..data.loaders import load_eval, load_pool
from ..data.records import parse_field_map
from ..models.loading import load_tokenizer
from ..models.registry import DEFAULT_MODEL
from .encoders import DEFAULT_ENCODER, Encoder
from .presets import RetrievalConfig, get_preset
from .retriever import Retriever, check_pool_size

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


# Settings a user may set over the preset's value, named as the preset's own fields.
OVERRIDES = ("seed", "urial_prompt", "max_k", "demo_budget", "max_demo_tokens", "similarity")


@dataclass(frozen=True)
class RetrievalSettings:
    """Which demos, for which queries, chosen and packed how: everything retrieval needs, as named.

    The packing limits default to the preset's (`None`); a value given here overrides it.
    """

    pool: str = "starter"  # built-in pool name or a file
    eval: str = "starter"  # built-in eval set name or a file
    preset: str = "paper"
    encoder: str = DEFAULT_ENCODER
    tokenizer: str | None = None  # model whose tokenizer counts tokens (None: the run's model)
    urial_prompt: str | None = None  # URIAL prompt file of the urial preset (None: the project's own)
    fields: str | None = None  # field mapping of plain files: prompt=NAME,response=NAME
    limit: int | None = None  # only the first N queries (None: all)
    seed: int = 0  # seed of the random preset's draws
    max_k: int | None = None  # candidates considered
    demo_budget: int | None = None  # demo tokens allowed in a prompt
    max_demo_tokens: int | None = None  # a longer formatted demo is skipped
    similarity: str | None = None  # dot | cosine

    def __post_init__(self) -> None:
        in_range("limit", self.limit, at_least=1, whole=True)

    def config(self) -> RetrievalConfig:
        """The preset with this setting's overrides: what the retriever runs."""
        return get_preset(self.preset, **{name: getattr(self, name) for name in OVERRIDES})

    def tokenizer_name(self, model: str | None = None) -> str:
        """The model whose tokenizer counts tokens: the one named, else the run's model, else the default."""
        return self.tokenizer or model or DEFAULT_MODEL


def load_queries(settings: RetrievalSettings, data_dir: str | None = None) -> pl.DataFrame:
    """The evaluation queries, cut to `limit`."""
    queries = load_eval(settings.eval, data_dir, parse_field_map(settings.fields))
    return queries.head(settings.limit) if settings.limit else queries


def build_retriever(
    settings: RetrievalSettings,
    data_dir: str | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    encoder: Encoder | None = None,
    pool: pl.DataFrame | None = None,
    config: RetrievalConfig | None = None,
) -> Retriever:
    """A ready retriever (the pool embedded, or read from the cache); a pool or configuration already
    resolved is not read or resolved again."""
    config = config or settings.config()
    if config.method not in {"retrieve", "random"}:
        pool = pl.DataFrame({"id": ["-"], "prompt": ["-"], "response": ["-"]})
    elif pool is None:
        pool = load_pool(settings.pool, data_dir, parse_field_map(settings.fields))
    check_pool_size(config, pool)
    tokenizer = tokenizer or load_tokenizer(settings.tokenizer_name())
    if config.method == "retrieve":
        encoder = encoder or Encoder(settings.encoder).load()
    return Retriever(pool, config, tokenizer, encoder, preset_name=settings.preset)
