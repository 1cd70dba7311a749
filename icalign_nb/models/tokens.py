"""How prompts become token ids: whether they start with BOS (each model's rule), and their encoding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .registry import model_spec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def tokenizer_adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer puts BOS first when asked for its special tokens (its own convention)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("x")["input_ids"]
    return bool(ids) and ids[0] == bos and tokenizer("x", add_special_tokens=False)["input_ids"][:1] != [bos]


def prompt_bos(name: str, tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether prompts for this model start with BOS: the registry's rule (Llama-2: none, as the
    reference code), none for chat templates (they carry their own), else the tokenizer's convention."""
    spec = model_spec(name)
    if spec.bos is not None:
        return spec.bos
    if spec.chat:
        return False
    return tokenizer_adds_bos(tokenizer)


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], bos: bool) -> list[list[int]]:
    """Token ids of each prompt as the model sees them: no special tokens, BOS first if `bos`."""
    if not prompts:
        return []
    ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    head = [tokenizer.bos_token_id] if bos and tokenizer.bos_token_id is not None else []
    return [head + list(row) for row in ids]
