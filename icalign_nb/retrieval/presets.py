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

from ..checks import in_range
from ..errors import UserError


@dataclass(frozen=True)
class RetrievalConfig:
    """How demonstrations are chosen, packed and ordered, and which template wraps them."""

    method: str = "retrieve"  # retrieve | random | zero-shot | urial
    max_k: int = 20  # candidates considered, best first
    demo_budget: int = 3000  # running total of demo tokens allowed in a prompt
    max_demo_tokens: int = 500  # a longer formatted demo is skipped
    similarity: str = "dot"  # dot (the paper: unnormalised) | cosine
    most_relevant_last: bool = True  # the paper reverses the kept list
    seed: int = 0  # random method: seed of the uniform draw; shuffled answers: seed of the shuffle
    urial_prompt: str | None = None  # urial method: prompt file (None: the project's own)
    # the ablations' deviations (the paper: None, "both", False, False)
    max_demos: int | None = None  # keep at most this many of the packed demos, best-ranked first
    demo_content: str = "both"  # both | question | answer | none (the template with empty slots)
    shuffle_answers: bool = False  # each kept demo shows another kept demo's answer
    system_text: bool = False  # the assistant paragraph (prompts.SYSTEM_TEXT) before the demos

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown method '{self.method}' ({', '.join(METHODS)})")
        if self.similarity not in {"dot", "cosine"}:
            raise UserError(f"unknown similarity '{self.similarity}' (dot, cosine)")
        in_range("max_demos", self.max_demos, at_least=0, whole=True)
        if self.demo_content not in {"both", "question", "answer", "none"}:
            raise UserError(f"unknown demo content '{self.demo_content}' (both, question, answer, none)")
        in_range("max_k", self.max_k, at_least=1, whole=True)
        in_range("demo_budget", self.demo_budget, at_least=0, whole=True)
        in_range("max_demo_tokens", self.max_demo_tokens, at_least=0, whole=True)
        in_range("seed", self.seed, whole=True)


METHODS = ("retrieve", "random", "zero-shot", "urial")


@dataclass(frozen=True)
class Preset:
    """A named retrieval preset: what it runs, and the label people read (shown, never compared)."""

    name: str
    label: str
    config: RetrievalConfig


def _presets(*presets: Preset) -> dict[str, Preset]:
    return {p.name: p for p in presets}


PRESETS: dict[str, Preset] = _presets(
    Preset("paper", "in-context (retrieved demos)", RetrievalConfig()),
    # the reference's Llama-1 "short" mode
    Preset("paper-short", "in-context (retrieved, 1000-token budget)", RetrievalConfig(demo_budget=1000)),
    # deviation: L2-normalised scores
    Preset("paper-cosine", "in-context (retrieved, cosine)", RetrievalConfig(similarity="cosine")),
    Preset("random", "in-context (random demos)", RetrievalConfig(method="random")),
    Preset("zero-shot", "zero-shot (direct prompt)", RetrievalConfig(method="zero-shot")),
    Preset("urial", "URIAL-style (fixed 3 demos)", RetrievalConfig(method="urial")),
    *(
        Preset(f"paper-k{k}", f"in-context, at most {k} demo{'s' * (k != 1)}", RetrievalConfig(max_demos=k))
        for k in (0, 1, 2, 4, 8)
    ),
    Preset("paper-first", "in-context, most relevant first", RetrievalConfig(most_relevant_last=False)),
    Preset("paper-shuffled-answers", "in-context, answers shuffled", RetrievalConfig(shuffle_answers=True)),
    Preset("paper-questions-only", "in-context, questions only", RetrievalConfig(demo_content="question")),
    Preset("paper-answers-only", "in-context, answers only", RetrievalConfig(demo_content="answer")),
    Preset("paper-format-only", "in-context, format only", RetrievalConfig(demo_content="none")),
    Preset("paper-system", "system text + in-context", RetrievalConfig(system_text=True)),
    Preset("system-only", "system text, no demos", RetrievalConfig(system_text=True, max_demos=0)),
)
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


def check_preset(name: str) -> Preset:
    """The preset of a name (an unknown name is one clear line listing them)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}'; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def get_preset(name: str, **overrides: object) -> RetrievalConfig:
    """A named preset's configuration, with fields overridden (None values leave the preset's)."""
    return replace(check_preset(name).config, **{k: v for k, v in overrides.items() if v is not None})
