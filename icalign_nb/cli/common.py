"""Options several commands share, each declared once, and their conversion into settings objects."""

from __future__ import annotations

import argparse

from ..models.loading import DTYPES
from ..models.registry import DEFAULT_MODEL
from ..retrieval.encoders import DEFAULT_ENCODER
from ..retrieval.presets import PRESETS


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


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


def add_retrieval_options(p: argparse.ArgumentParser, preset: str = "paper") -> None:
    """The retrieval settings: data, preset, encoder, tokenizer and the packing limits."""
    p.add_argument("--pool", default="starter", help="demonstration pool: built-in name or a file")
    p.add_argument("--eval", default="starter", help="evaluation queries: built-in name or a file")
    p.add_argument(
        "--preset", default=preset, choices=list(PRESETS), help=f"retrieval preset (default {preset})"
    )
    p.add_argument(
        "--encoder", default=DEFAULT_ENCODER, help="retrieval encoder: minilm, contriever, HF id or folder"
    )
    p.add_argument(
        "--tokenizer", default=None, help="model whose tokenizer counts tokens (default: the model's)"
    )
    p.add_argument("--urial-prompt", default=None, help="URIAL prompt file for the urial preset")
    p.add_argument("--fields", default=None, help="field mapping for plain files: prompt=NAME,response=NAME")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N queries (default: all)")
    p.add_argument("--max-k", type=int, default=None, help="candidates considered (paper: 20)")
    p.add_argument("--budget", type=int, default=None, help="demo token budget (paper: 3000)")
    p.add_argument("--max-demo-tokens", type=int, default=None, help="per-demo token limit (paper: 500)")
    p.add_argument("--similarity", default=None, choices=["dot", "cosine"], help="score (paper: dot)")


def retrieval_settings(args: argparse.Namespace, seed: int = 0) -> object:
    """The retrieval settings the options name."""
    from ..retrieval.settings import RetrievalSettings

    return RetrievalSettings(
        pool=args.pool,
        eval=args.eval,
        preset=args.preset,
        encoder=args.encoder,
        tokenizer=args.tokenizer,
        urial_prompt=args.urial_prompt,
        fields=args.fields,
        limit=args.limit,
        seed=seed,
        max_k=args.max_k,
        budget=args.budget,
        max_demo_tokens=args.max_demo_tokens,
        similarity=args.similarity,
    )


def add_model_option(p: argparse.ArgumentParser) -> None:
    """The model answering."""
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"registered name, Hugging Face id or folder ({DEFAULT_MODEL})"
    )


def add_stats_options(p: argparse.ArgumentParser, fmt: bool = True) -> None:
    """Bootstrap settings of the analysis commands, and their output format."""
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of prompts")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling")
    if fmt:
        p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format")


def bootstrap(args: argparse.Namespace) -> object:
    """The bootstrap settings the options name."""
    from ..analysis.winrates import Bootstrap

    return Bootstrap(n=args.bootstrap, seed=args.bootstrap_seed)


def add_generation_options(p: argparse.ArgumentParser, samples: int = 5, max_new_tokens: int = 1000) -> None:
    """The decoding settings (defaults: the paper's)."""
    p.add_argument(
        "--samples",
        type=positive_int,
        default=samples,
        help=f"samples per query (paper: 5; default {samples})",
    )
    p.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=max_new_tokens,
        help="new-token cap (paper: 1000)",
    )
    p.add_argument(
        "--temperature", type=float, default=0.7, help="sampling temperature; 0 = greedy (paper: 0.7)"
    )
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus filter (paper: 1.0)")
    p.add_argument(
        "--top-k", type=int, default=50, help="top-k filter, 0 = off (paper: transformers' default 50)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of every draw: the samples and the random preset's demos"
    )


def add_decoding_options(p: argparse.ArgumentParser, batch_help: str) -> None:
    """How the transformers backend decodes: rows together, the token budget, the dtype."""
    from ..generation.transformers_backend import MAX_ROWS, TOKEN_BUDGET

    p.add_argument("--batch-size", type=positive_int, default=None, help=f"{batch_help} ({MAX_ROWS})")
    p.add_argument(
        "--token-budget",
        type=positive_int,
        default=None,
        help=f"rows run while prompt tokens held + max_new_tokens per row fit ({TOKEN_BUDGET})",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="model dtype (auto: bf16 on CUDA and on CPUs with bf16 instructions, else fp32); recorded",
    )


def run_spec(args: argparse.Namespace) -> object:
    """The run spec the model, retrieval and generation options name."""
    from ..generation.runs import RunSpec
    from ..generation.types import GenerationConfig

    return RunSpec(
        model=args.model,
        backend=getattr(args, "backend", "transformers"),
        served_model=getattr(args, "served_model", None),
        dtype=getattr(args, "dtype", "auto"),
        retrieval=retrieval_settings(args, seed=args.seed),
        generation=GenerationConfig(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k or None,
            samples=args.samples,
            seed=args.seed,
        ),
    )
