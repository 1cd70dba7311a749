"""`icalign generate` and `icalign export`: thin handlers over `icalign_nb.generation`."""

from __future__ import annotations

import argparse

from ..generation.types import BACKENDS
from .common import (
    add_decoding_options,
    add_generation_options,
    add_model_option,
    add_retrieval_options,
    positive_int,
    run_spec,
)


def add_commands(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register `generate` and `export`."""
    p = sub.add_parser("generate", parents=[parent], help="generate answers into a resumable run directory")
    p.add_argument("--run", required=True, help="run directory (created; re-run the same command to resume)")
    add_model_option(p)
    p.add_argument("--backend", default="transformers", choices=BACKENDS, help="generation backend")
    add_retrieval_options(p)
    add_generation_options(p)
    add_decoding_options(p, "transformers: most rows decoded together; servers: items per saved chunk")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if present)")
    p.add_argument("--base-url", default=None, help="openai backend: server URL (else ICALIGN_BASE_URL)")
    p.add_argument("--api-key", default=None, help="openai backend: key (else ICALIGN_API_KEY; never saved)")
    p.add_argument("--served-model", default=None, help="openai backend: model name on the server")
    p.add_argument("--concurrency", type=positive_int, default=8, help="openai backend: requests in flight")
    p.add_argument("--max-retries", type=int, default=6, help="openai backend: retries on 429/5xx/timeouts")
    p.add_argument(
        "--tensor-parallel-size", type=positive_int, default=1, help="vllm backend: GPUs per model"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("export", parents=[parent], help="export a run in the paper's or AlpacaEval's format")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--format", required=True, choices=["paper", "alpaca_eval"], help="output format")
    p.add_argument("--out", required=True, help="output file (.jsonl for paper, .json for alpaca_eval)")
    p.add_argument("--generator", default=None, help="alpaca_eval: generator name (default model_preset)")
    p.add_argument("--sample", type=int, default=0, help="alpaca_eval: which sample per query")
    p.set_defaults(func=cmd_export)


def cmd_generate(args: argparse.Namespace) -> int:
    """Fill a run directory, resuming what is there."""
    from ..generation.runs import RunOptions, run_generation

    options = RunOptions(
        batch_size=args.batch_size,
        token_budget=args.token_budget,
        device=args.device,
        base_url=args.base_url,
        api_key=args.api_key,
        concurrency=args.concurrency,
        max_retries=args.max_retries,
        tensor_parallel_size=args.tensor_parallel_size,
        data_dir=args.data_dir,
        progress=not args.no_progress,
    )
    s = run_generation(args.run, run_spec(args), options)
    how = ", ".join(f"{k} {v}" for k, v in sorted(s.stopped_by.items())) or "-"
    print(
        f"run {s.run_dir}: {s.generated} generated, {s.already_done} already done, {s.total} items "
        f"(stopped by: {how}; {s.seconds:.1f}s)"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """A finished run in another tool's format."""
    from ..files import check_writable
    from ..generation.export import export_run

    check_writable(args.out)
    n = export_run(args.run, args.format, args.out, generator=args.generator, sample=args.sample)
    print(f"wrote {n} queries to {args.out} ({args.format})")
    return 0
