"""Retrieval presets: how demonstrations are chosen, packed and ordered, and which template wraps them.

`paper` is the reference code to the letter; every other preset is a named deviation or control.
The ablations keep the paper's retrieval and packing and change one thing about what the model
sees: how many of the packed demos (`paper-k0` … `paper-k8`), their order (`paper-first`), their
answers (`paper-shuffled-answers`: each kept demo shows another kept demo's answer), which half of
each demo (`paper-questions-only`, `paper-answers-only`), no content at all (`paper-format-only`:
the template with empty slots), or an assistant paragraph before them (`paper-system`, and
`system-only` without demos).
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
    seed: int = 0  # random method: seed of the uniform draw; shuffled answers: seed of the shuffle
    urial_path: str | None = None  # urial method: prompt file (None: the project's own)
    # the ablations' deviations (the paper: None, "both", False, False)
    max_demos: int | None = None  # keep at most this many of the packed demos, best-ranked first
    demo_content: str = "both"  # both | question | answer | none (the template with empty slots)
    shuffle_answers: bool = False  # each kept demo shows another kept demo's answer
    system_text: bool = False  # the assistant paragraph (prompts.SYSTEM_TEXT) before the demos


PRESETS: dict[str, RetrievalConfig] = {
    "paper": RetrievalConfig(),
    "paper-short": RetrievalConfig(max_tokens=1000),  # the reference's Llama-1 "short" mode
    "paper-cosine": RetrievalConfig(similarity="cosine"),  # deviation: L2-normalised scores
    "random": RetrievalConfig(method="random"),
    "zero-shot": RetrievalConfig(method="zero-shot"),
    "urial": RetrievalConfig(method="urial"),
    **{f"paper-k{k}": RetrievalConfig(max_demos=k) for k in (0, 1, 2, 4, 8)},
    "paper-first": RetrievalConfig(most_relevant_last=False),
    "paper-shuffled-answers": RetrievalConfig(shuffle_answers=True),
    "paper-questions-only": RetrievalConfig(demo_content="question"),
    "paper-answers-only": RetrievalConfig(demo_content="answer"),
    "paper-format-only": RetrievalConfig(demo_content="none"),
    "paper-system": RetrievalConfig(system_text=True),
    "system-only": RetrievalConfig(system_text=True, max_demos=0),
}
# The k sweep ("all that fit" is `paper`), then the other context ablations.
K_SWEEP = ["paper-k0", "paper-k1", "paper-k2", "paper-k4", "paper-k8", "paper"]
ABLATIONS = [
    "paper-first",
    "paper-shuffled-answers",
    "paper-questions-only",
    "paper-answers-only",
    "paper-format-only",
    "paper-system",
    "system-only",
]


def get_preset(name: str, **overrides: object) -> RetrievalConfig:
    """A named preset, with fields overridden (unknown names give one clear line)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}'; presets: {', '.join(PRESETS)}")
    config = replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    if config.similarity not in {"dot", "cosine"}:
        raise UserError(f"unknown similarity '{config.similarity}' (dot, cosine)")
    if config.max_demos is not None and config.max_demos < 0:
        raise UserError(f"max_demos must be >= 0 (got {config.max_demos})")
    if config.demo_content not in {"both", "question", "answer", "none"}:
        raise UserError(f"unknown demo content '{config.demo_content}' (both, question, answer, none)")
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
