"""Options several commands share, each declared once, and their conversion into settings objects.

Every option is named as the setting it fills (`--max-new-tokens` fills `max_new_tokens`) and has no
default of its own: an option left out leaves the settings object's default, so each default lives in
one place. Renamed options keep their old spelling as a deprecated alias that says the new one.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..generation.types import GenerationConfig
from ..models.loading import DTYPES
from ..models.registry import DEFAULT_MODEL
from ..retrieval.presets import PRESETS, RetrievalConfig
from ..retrieval.settings import RetrievalSettings

if TYPE_CHECKING:
    from ..analysis.winrates import Bootstrap
    from ..generation.runs import RunOptions, RunSpec

T = TypeVar("T")

# Options renamed so that one setting has one name: old spelling -> new spelling.
RENAMED_OPTIONS = {"--budget": "--demo-budget", "--token-budget": "--batch-budget", "--queries": "--limit"}


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def default_of(cls: type, name: str) -> Any:
    """The default a settings dataclass gives one of its fields (what an option left out means)."""
    found = {f.name: f for f in dataclasses.fields(cls)}[name]
    return found.default_factory() if found.default is dataclasses.MISSING else found.default


def settings_from(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """A settings dataclass from the options named like its fields (options left out: its defaults)."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.init and getattr(args, f.name, None) is not None
    }
    return cls(**{**values, **given})


class _Renamed(argparse.Action):
    """A deprecated spelling of an option: sets the same setting and says the new name once."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        print(
            f"icalign: note: {option_string} is now {RENAMED_OPTIONS[option_string or '']}; "
            "the old name still works for now",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_option(p: argparse.ArgumentParser, flag: str, **kwargs: Any) -> None:
    """One option, and its old spelling (if it was renamed) as a deprecated alias hidden from help."""
    p.add_argument(flag, default=None, **kwargs)
    old = next((o for o, new in RENAMED_OPTIONS.items() if new == flag), None)
    if old is not None:
        dest = flag.removeprefix("--").replace("-", "_")
        p.add_argument(old, dest=dest, type=kwargs.get("type"), action=_Renamed, help=argparse.SUPPRESS)


def shared_parent() -> argparse.ArgumentParser:
    """Options every command takes: where the cache and the public data are."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--cache-dir", default=None, help="cache root for everything kept (else ICALIGN_CACHE)"
    )
    parent.add_argument(
        "--data-dir",
        default=None,
        help="folder with the public data layout (else ICALIGN_DATA_DIR, else fetch)",
    )
    return parent


def add_retrieval_options(p: argparse.ArgumentParser) -> None:
    """The retrieval settings: data, preset, encoder, tokenizer and the packing limits (paper's defaults)."""
    s, c = RetrievalSettings, RetrievalConfig
    add_option(p, "--pool", help=f"demonstration pool: built-in name or a file ({default_of(s, 'pool')})")
    add_option(p, "--eval", help=f"evaluation queries: built-in name or a file ({default_of(s, 'eval')})")
    add_option(p, "--preset", choices=list(PRESETS), help=f"retrieval preset ({default_of(s, 'preset')})")
    add_option(p, "--encoder", help="retrieval encoder: minilm, contriever, HF id or folder (minilm)")
    add_option(p, "--tokenizer", help="model whose tokenizer counts tokens (default: the model's)")
    add_option(p, "--urial-prompt", help="URIAL prompt file for the urial preset")
    add_option(p, "--fields", help="field mapping for plain files: prompt=NAME,response=NAME")
    add_option(p, "--limit", type=positive_int, help="only the first N queries (default: all)")
    add_option(p, "--max-k", type=int, help=f"candidates considered (paper: {default_of(c, 'max_k')})")
    add_option(
        p, "--demo-budget", type=int, help=f"demo tokens in a prompt (paper: {default_of(c, 'demo_budget')})"
    )
    add_option(
        p,
        "--max-demo-tokens",
        type=int,
        help=f"per-demo token limit (paper: {default_of(c, 'max_demo_tokens')})",
    )
    add_option(p, "--similarity", choices=["dot", "cosine"], help="score (paper: dot)")


def add_seed_option(p: argparse.ArgumentParser, what: str) -> None:
    """The seed of a step's draws."""
    add_option(p, "--seed", type=int, help=f"seed of {what} (0)")


def retrieval_settings(args: argparse.Namespace) -> RetrievalSettings:
    """The retrieval settings the options name."""
    return settings_from(RetrievalSettings, args)


def add_model_option(p: argparse.ArgumentParser) -> None:
    """The model answering."""
    add_option(p, "--model", help=f"registered name, Hugging Face id or folder ({DEFAULT_MODEL})")


def add_stats_options(p: argparse.ArgumentParser, fmt: bool = True) -> None:
    """Bootstrap settings of the analysis commands, and their output format."""
    add_option(p, "--bootstrap", type=int, help="bootstrap resamples of prompts (1000)")
    add_option(p, "--bootstrap-seed", type=int, help="seed of the bootstrap resampling (0)")
    if fmt:
        p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format")


def bootstrap(args: argparse.Namespace) -> Bootstrap:
    """The bootstrap settings the options name."""
    from ..analysis.winrates import Bootstrap

    return settings_from(Bootstrap, argparse.Namespace(n=args.bootstrap, seed=args.bootstrap_seed))


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """The decoding settings (defaults: the paper's)."""
    g = GenerationConfig
    add_option(
        p, "--samples", type=positive_int, help=f"samples per query (paper: {default_of(g, 'samples')})"
    )
    add_option(
        p,
        "--max-new-tokens",
        type=positive_int,
        help=f"new-token cap (paper: {default_of(g, 'max_new_tokens')})",
    )
    add_option(
        p, "--temperature", type=float, help=f"sampling temperature; 0 = greedy (paper: {g.temperature})"
    )
    add_option(p, "--top-p", type=float, help=f"nucleus filter (paper: {g.top_p})")
    add_option(p, "--top-k", type=int, help=f"top-k filter, 0 = off (paper: transformers' default {g.top_k})")
    add_seed_option(p, "every draw: the samples and the random preset's demos")


def add_decoding_options(p: argparse.ArgumentParser, batch_help: str) -> None:
    """How the transformers backend decodes: rows together, the batch's token budget, the dtype."""
    add_option(p, "--batch-size", type=positive_int, help=f"{batch_help} (32)")
    add_option(
        p,
        "--batch-budget",
        type=positive_int,
        help="tokens a decoding batch may hold: prompt tokens + max_new_tokens per row, in 64-token blocks; "
        "the key/value cache is allocated from it (131072)",
    )
    add_option(
        p,
        "--dtype",
        choices=DTYPES,
        help="model dtype (auto: bf16 on CUDA cards of compute capability >= 8 and on CPUs with bf16 "
        "instructions, else fp16 on CUDA, fp32 on CPU; int8, int4: quantised weights with auto activations, "
        "CPU only, opt-in); recorded",
    )


def run_spec(args: argparse.Namespace) -> RunSpec:
    """The run spec the model, retrieval and generation options name."""
    from ..generation.runs import RunSpec

    return settings_from(
        RunSpec, args, retrieval=retrieval_settings(args), generation=settings_from(GenerationConfig, args)
    )


def run_options(args: argparse.Namespace) -> RunOptions:
    """How to run, from the options (a command without an option leaves its default)."""
    from ..generation.runs import RunOptions

    return settings_from(RunOptions, args, progress=not getattr(args, "no_progress", False))
