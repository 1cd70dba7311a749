"""Judge specifications: what a `--judge SPEC` string means, and the name results carry.

SPEC forms:

- `paper` — the paper's judge: GPT-4-0613 over an OpenAI-compatible chat endpoint with the paper's
  prompt, temperature 0.2, max_tokens 500.
- `openai:MODEL` — any OpenAI-compatible chat endpoint (`--base-url`, else `OPENAI_BASE_URL`, else
  OpenAI); the key is read from the environment only (`OPENAI_API_KEY`).
- `local:MODEL` — a local transformers chat model (registry name, Hugging Face id or folder).
- `fitted[:FILE]` — the offline default: a logistic model of interpretable answer features fitted to
  GPT-4's verdicts (`judging.fit`); FILE is a refit (`icalign judge-fit`), else the shipped one.
- `embedding[:ENCODER]` — the offline reference-guided embedding judge (default encoder MiniLM).
- `recorded:FILE` — the recorded judge replies of the paper release (`*_autoeval.jsonl`).

Every judge except the paper's GPT-4 (live or recorded) is a *proxy*: its results carry its name
so tables and figures can say which judge made them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..checks import device_name, endpoint_url, in_range
from ..errors import UserError
from ..files import folder_fingerprint, sha256_text
from ..retrieval.encoders import Encoder

if TYPE_CHECKING:
    from .fit import Coefficients, Models

PAPER_MODEL = "gpt-4-0613"
DEFAULT_JUDGE = "fitted"  # the judge every command and notebook uses unless told otherwise (offline)
SHIPPED = "shipped"  # the fitted judge's coefficients shipped in the package

# The embedding judge's default draw margin: a system answer whose cosine similarity to the
# reference is within this of the baseline answer's is a draw (see `judges.embedding` for the choice).
EMBEDDING_DRAW_MARGIN = 0.005
EMBEDDING_MAX_TOKENS = 256


@dataclass(frozen=True)
class JudgeSpec:
    """One judge: backend kind, model, prompt and decoding settings, draw margin."""

    kind: str
    model: str
    prompt: str = "default"  # paper | default (LLM judges)
    temperature: float = 0.2
    max_tokens: int = 500
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    margin: float = 0.0  # |score_system - score_baseline| <= margin is a draw
    max_length: int = EMBEDDING_MAX_TOKENS  # embedding judge: tokens of each answer embedded
    device: str | None = None  # local judge: cpu | cuda (default: CUDA when present)

    def __post_init__(self) -> None:
        in_range("temperature", self.temperature, at_least=0)
        in_range("max_tokens", self.max_tokens, at_least=1, whole=True)
        in_range("margin", self.margin, at_least=0)
        in_range("max_length", self.max_length, at_least=1, whole=True)
        endpoint_url("base_url", self.base_url)
        device_name("device", self.device)

    @property
    def name(self) -> str:
        """The label results carry, e.g. `gpt-4-0613/paper` or `embedding:minilm@256 margin=0.005`."""
        if self.kind == "recorded":
            return f"{PAPER_MODEL}/paper (recorded: {Path(self.model).name})"
        if self.kind == "embedding":
            return f"embedding:{self.model}@{self.max_length} margin={self.margin:g}"
        if self.kind == "fitted":
            which = SHIPPED if self.model == SHIPPED else Path(self.model).name
            name = f"fitted:{which}@{fitted_digest(self.model)[:8]}"
            return name if self.margin == fitted_margin(self.model) else f"{name} margin={self.margin:g}"
        base = f"{self.model}/{self.prompt}" if self.kind == "openai" else f"local:{self.model}/{self.prompt}"
        return base

    @property
    def proxy(self) -> bool:
        """False only for the paper's judge (GPT-4-0613 with the paper prompt, live or recorded)."""
        if self.kind == "recorded":
            return False
        return not (self.kind == "openai" and self.model == PAPER_MODEL and self.prompt == "paper")

    @property
    def label(self) -> str:
        """The name, marked `(proxy judge)` when it is one: what figures print."""
        return f"{self.name} (proxy judge)" if self.proxy else self.name

    @property
    def key(self) -> str:
        """What identifies this judge's replies in the cache (everything that changes a reply)."""
        model = self.model
        if self.kind in ("embedding", "local"):  # the model's content (a folder's files), not its path
            model = model_content(self.kind, self.model, self.max_length)
        parts = [self.kind, model, self.prompt, repr(self.temperature), str(self.max_tokens)]
        if self.kind == "openai":
            parts.append(self.base_url or "")
        if self.kind == "fitted":  # a refit changes every reply
            parts += [fitted_digest(self.model), repr(self.margin)]
        return sha256_text(*parts)[:24]


@lru_cache(maxsize=16)
def model_content(kind: str, model: str, max_length: int) -> str:
    """What a judge's model is, by content: the encoder's key (its files' hash and truncation) for the
    embedding judge, a local folder's files' hash for a local judge (a hub id stands for itself)."""
    if kind == "embedding":
        return Encoder(name=model, max_length=max_length).key
    folder = Path(model).expanduser()
    return folder_fingerprint(folder) if folder.is_dir() else model


def coefficients_path(model: str) -> Path:
    """The fitted judge's coefficients file: the shipped one, or a refit's path."""
    if model == SHIPPED:
        return _shipped()
    path = Path(model).expanduser()
    if not path.is_file():
        raise UserError(
            f"--judge fitted:{model}: no such coefficients file (write one with `icalign judge-fit`)"
        )
    return path


@lru_cache(maxsize=1)
def _shipped() -> Path:
    from ..data.fetch import package_resource

    return package_resource("fitted_judge.json")


def fitted_digest(model: str) -> str:
    """What identifies a fitted judge's verdicts: its weights, margin, feature version and encoder (not
    the validation numbers or notes its file also holds)."""
    return _coefficients(model).digest()


def fitted_margin(model: str) -> float:
    """The fitted judge's draw margin as a margin on the score difference P(win) - P(lose): twice the
    margin around 0.5 its coefficients file records."""
    return 2 * _coefficients(model).models.margin


def fitted_models(model: str) -> Models:
    """A fitted judge's two models and draw margin (the shipped ones, or a refit's)."""
    return _coefficients(model).models


def _coefficients(model: str) -> Coefficients:
    """A fitted judge's coefficients, read once per version of its file."""
    path = coefficients_path(model)
    stat = path.stat()
    return _read(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int, size: int) -> Coefficients:
    from .fit import read_coefficients

    return read_coefficients(path)


def parse_judge_spec(spec: str, **overrides: object) -> JudgeSpec:
    """A `--judge` string plus CLI overrides (None values ignored) as a JudgeSpec."""
    kind, _, rest = spec.partition(":")
    given = {k: v for k, v in overrides.items() if v is not None}
    if spec == "paper":
        base = JudgeSpec("openai", PAPER_MODEL, prompt="paper", temperature=0.2, max_tokens=500)
    elif kind == "openai" and rest:
        base = JudgeSpec("openai", rest)
    elif kind == "local" and rest:
        base = JudgeSpec("local", rest)
    elif kind == "embedding":
        base = JudgeSpec("embedding", rest or "minilm", prompt="reference", margin=EMBEDDING_DRAW_MARGIN)
    elif kind == "fitted":
        base = JudgeSpec("fitted", rest or SHIPPED, prompt="features", margin=fitted_margin(rest or SHIPPED))
    elif kind == "recorded" and rest:
        base = JudgeSpec("recorded", rest, prompt="paper")
    else:
        raise UserError(
            f"unknown judge '{spec}' "
            "(paper | openai:MODEL | local:MODEL | fitted[:FILE] | embedding[:ENCODER] | recorded:FILE)"
        )
    if "prompt" in given and base.kind in {"embedding", "recorded", "fitted"}:
        given.pop("prompt")
    try:
        return replace(base, **given)
    except TypeError as exc:
        raise UserError(f"judge {spec}: {exc}") from None
