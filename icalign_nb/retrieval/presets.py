"""Retrieval presets: how demonstrations are chosen, packed and ordered, and which template wraps them.

`paper` is the reference code to the letter; every other preset is a named deviation or control.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import UserError


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
    if config.max_k < 1:
        raise UserError(f"max_k (--max-k) must be >= 1 (got {config.max_k})")
    if config.max_tokens < 0:
        raise UserError(f"the demo budget (--budget) must be >= 0 tokens (got {config.max_tokens})")
    if config.max_per_instance_tokens < 0:
        raise UserError(
            "the per-demo limit (--max-demo-tokens) must be >= 0 tokens "
            f"(got {config.max_per_instance_tokens})"
        )
    return config
