"""A study: the experiment a notebook runs, as one settings object, and the systems it compares.

Every notebook builds its study with `Study.from_notebook(globals())`: the notebook's own parameters
(and any that `icalign notebooks run` passes, `-p` or `-f study.yaml`) override the defaults here,
which are the main job's. Each system is one resumable generation run under
`<work_dir>/generations/<setup>/<system>/`, where `<setup>` names the model and data and a hash of
every shared setting, so notebooks with the same settings share runs and different ones never collide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..checks import in_range
from ..data.loaders import check_source
from ..errors import UserError
from ..files import sha256_text
from ..generation.runs import RunSpec, check_spec
from ..generation.types import BACKENDS, GenerationConfig
from ..judging.spec import DEFAULT_JUDGE, parse_judge_spec
from ..models.registry import DEFAULT_MODEL, REGISTRY, model_spec
from ..retrieval.encoders import DEFAULT_ENCODER, resolve_encoder
from ..retrieval.presets import check_preset
from ..retrieval.settings import RetrievalSettings

CHAT_LABEL = "instruction-tuned chat model (zero-shot)"  # the chat row's label (shown only)
# Settings where a notebook's '' or 0 means "not set".
UNSET_WHEN_EMPTY = ("chat_model", "limit", "batch_size", "reference", "data_dir")


@dataclass(frozen=True)
class System:
    """One system of a study: its stable id (the key of every table, file and filter), the label people
    read (shown, never compared), what it generates and where its run lives."""

    id: str
    label: str
    spec: RunSpec
    run_dir: Path


@dataclass(frozen=True)
class Study:
    """The experiment: what answers (model, presets, chat model), on what (pool, eval set), decoded how,
    judged how, and where runs, data and figures are kept. Defaults: the main job's."""

    model: str = DEFAULT_MODEL  # base model answering: registry name, Hugging Face id or folder
    presets: tuple[str, ...] = ("zero-shot", "paper", "random", "urial")  # one system per preset
    chat_model: str | None = "smollm2-135m"  # an instruction-tuned model answering zero-shot (None: none)
    pool: str = "starter"  # demonstration pool: built-in name or a file
    eval: str = "starter"  # evaluation queries: built-in name or a file
    encoder: str = DEFAULT_ENCODER  # retrieval encoder
    limit: int | None = None  # first N queries (None: all)
    samples: int = 1  # answers per query
    max_new_tokens: int = 256  # cap on answer length in tokens
    temperature: float = 0.7  # sampling temperature
    seed: int = 0  # seed of sampling and of every random draw
    backend: str = "transformers"  # generation backend
    batch_size: int | None = None  # most answers decoded together (None: as many as the budget holds)
    baseline: str = "starter"  # baseline answers the judge compares against
    judge: str = DEFAULT_JUDGE  # judge spec
    reference: str | None = None  # reference answers for a reference-guided judge (None: the eval set's)
    swap: bool = True  # judge both answer orders
    work_dir: str = "../runs/work"  # generations and judgments shared by notebooks
    data_dir: str | None = None  # local folder with the public data (None: ICALIGN_DATA_DIR or the cache)
    figures_dir: str = "../figures"  # where figures are written

    def __post_init__(self) -> None:
        """Every setting checked now, before any work: names (presets, models, backend, judge, data,
        encoder) and numbers, and each system as its run would check it."""
        for name in self.presets:
            check_preset(name)
        if self.backend not in BACKENDS:
            raise UserError(f"unknown backend '{self.backend}'; backends: {', '.join(BACKENDS)}")
        if self.chat_model and not model_spec(self.chat_model).chat:
            chats = ", ".join(name for name, spec in REGISTRY.items() if spec.chat)
            raise UserError(
                f"chat_model '{self.chat_model}' is not a registered chat model ({chats}): it would be "
                "prompted without a chat template and shown as one"
            )
        in_range("batch_size", self.batch_size, at_least=1, whole=True)
        in_range("seed", self.seed, at_least=0, below=2**32, whole=True)  # also the maps' and bootstraps'
        self.generation()  # refuses a bad decoding setting now, before any work
        self.retrieval()
        for system in self.systems():
            check_spec(system.spec)
        parse_judge_spec(self.judge)
        check_source(self.pool, "pool")
        check_source(self.eval, "eval set")
        check_source(self.baseline, "baseline")
        if self.reference and self.reference.startswith("eval:"):
            check_source(self.reference.removeprefix("eval:"), "eval set")
        elif self.reference:
            check_source(self.reference, "baseline")
        resolve_encoder(self.encoder)
        if self.data_dir and not Path(self.data_dir).expanduser().is_dir():
            raise UserError(f"data_dir {self.data_dir}: not a folder")

    @classmethod
    def from_notebook(cls, namespace: Mapping[str, Any]) -> Study:
        """The study a notebook's namespace describes: every field found there by name ('' or 0 meaning
        "not set" for optional ones, `presets` comma-separated), the rest as defaults."""
        given: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in namespace:
                continue
            value = namespace[f.name]
            if f.name in UNSET_WHEN_EMPTY and value in ("", 0, None):
                value = None
            elif f.name == "presets" and isinstance(value, str):
                value = tuple(p.strip() for p in value.split(",") if p.strip())
            given[f.name] = value
        return cls(**given)

    def describe(self) -> str:
        """One line of what the systems are and how they answered (a figure's subtitle)."""
        queries = f"first {self.limit} " if self.limit else ""
        return (
            f"base model {self.model}, chat model {self.chat_model or '-'}; {queries}{self.eval} queries, "
            f"{self.samples} sample(s) each, at most {self.max_new_tokens} new tokens"
        )

    def retrieval(self, **changes: Any) -> RetrievalSettings:
        """The retrieval settings every system shares (the preset set per system)."""
        return RetrievalSettings(
            pool=self.pool, eval=self.eval, encoder=self.encoder, limit=self.limit, seed=self.seed, **changes
        )

    def generation(self) -> GenerationConfig:
        """The decoding settings every system shares."""
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            samples=self.samples,
            seed=self.seed,
        )

    def spec(self, preset: str, model: str | None = None) -> RunSpec:
        """The run of one preset on the study's model (or another model, e.g. the chat model)."""
        retrieval = self.retrieval(preset=preset)
        return RunSpec(
            model=model or self.model, backend=self.backend, retrieval=retrieval, generation=self.generation()
        )

    def folder(self) -> Path:
        """Where this study's runs live: readable names plus a hash of every shared setting."""
        digest = sha256_text(repr(asdict(self.spec("-"))))[:10]
        name = "-".join(_slug(str(v)) for v in (self.model, self.pool, self.eval))
        return Path(self.work_dir) / "generations" / f"{name}-{digest}"

    def system(self, preset: str) -> System:
        """The system of one preset on the study's model."""
        return System(preset, check_preset(preset).label, self.spec(preset), self.folder() / preset)

    def chat_system(self) -> System | None:
        """The chat model answering zero-shot through its chat template (the paper's Llama-2-chat row)."""
        if not self.chat_model:
            return None
        key = f"chat-{_slug(self.chat_model)}"
        return System(key, CHAT_LABEL, self.spec("zero-shot", self.chat_model), self.folder() / key)

    def systems(self) -> list[System]:
        """Every system: the presets on the base model, then the chat model if there is one."""
        chat = self.chat_system()
        return [self.system(p) for p in self.presets] + ([chat] if chat is not None else [])


def tagged(systems: list[System], tag: str) -> list[System]:
    """Systems of a variant study, with ids and labels that say which variant (`paper@pool=alpaca`)."""
    return [replace(s, id=f"{s.id}@{tag}", label=f"{s.label} [{tag}]") for s in systems]


def labels(systems: list[System]) -> dict[str, str]:
    """System id -> label, for display."""
    return {s.id: s.label for s in systems}


def _slug(text: str) -> str:
    """A file-name-safe short form of a name or path."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", Path(text).name if "/" in text else text)[:40]
