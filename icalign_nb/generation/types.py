"""What every generation backend shares: decoding settings, requests, results and the backend protocol.

Every backend takes `Request`s (a prompt, its token ids, its stop strings and a per-item seed) and
yields lists of `Result`s as items finish, so the caller saves each list before more arrive.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from ..checks import in_range
from ..files import sha256_text

BACKENDS = ("transformers", "vllm", "openai")


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings; the defaults are the paper's (transformers' default top_k=50 kept)."""

    max_new_tokens: int = 1000
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int | None = 50  # None or 0: no top-k filter
    samples: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        in_range("max_new_tokens", self.max_new_tokens, at_least=1, whole=True)
        in_range("temperature", self.temperature, at_least=0)
        in_range("top_p", self.top_p, above=0, at_most=1)
        in_range("top_k", self.top_k, at_least=0, whole=True)
        in_range("samples", self.samples, at_least=1, whole=True)
        in_range("seed", self.seed, whole=True)
        if self.top_k == 0:  # one way to say "no top-k filter"
            object.__setattr__(self, "top_k", None)

    @property
    def greedy(self) -> bool:
        """Temperature 0 means greedy decoding."""
        return self.temperature == 0

    @property
    def effective_top_k(self) -> int | None:
        """The top-k filter in force, or None."""
        return self.top_k or None

    def to_json(self) -> dict:
        """The settings as recorded in a run's config.json."""
        return asdict(self)


@dataclass(frozen=True)
class Request:
    """One item to generate: a (query, sample) with its prompt, stops and seed."""

    query_id: str
    sample: int
    prompt: str
    stop: tuple[str, ...]
    seed: int
    prompt_ids: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[str, int]:
        """The item's identity in a run."""
        return (self.query_id, self.sample)


@dataclass(frozen=True)
class Result:
    """A finished item: the cleaned answer and how decoding ended."""

    request: Request
    response: str
    n_prompt_tokens: int
    n_generated_tokens: int
    stopped_by: str  # stop | eos | length
    seconds: float  # wall time from the item's start (its prompt's encoding, or joining the batch) to its end


class Backend(Protocol):
    """What the run loop needs from a backend."""

    name: str

    def generate(self, requests: Sequence[Request], config: GenerationConfig) -> Iterator[list[Result]]:
        """Yield results as they finish, a list at a time (every request exactly once)."""
        ...


def item_seed(seed: int, query_id: str, sample: int) -> int:
    """A per-item seed: the same (run seed, query, sample) always samples the same answer."""
    return int(sha256_text(str(seed), query_id, str(sample))[:15], 16)
