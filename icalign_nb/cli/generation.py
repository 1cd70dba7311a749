"""`icalign generate` and `icalign export`: thin handlers over `icalign_nb.generation`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..generation.types import BACKENDS
from .common import (
    add_decoding_options,
    add_generation_options,
    add_model_option,
    add_option,
    add_retrieval_options,
    positive_int,
    run_options,
    run_spec,
)


def add_commands(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register `generate` and `export`."""
    p = sub.add_parser("generate", parents=[parent], help="generate answers into a resumable run directory")
    p.add_argument("--run", required=True, help="run directory (created; re-run the same command to resume)")
    add_model_option(p)
    add_option(p, "--backend", choices=BACKENDS, help="generation backend (transformers)")
    add_retrieval_options(p)
    add_generation_options(p)
    add_decoding_options(p, "transformers: most rows decoded together; servers: items per saved chunk")
    add_option(p, "--device", help="cpu | cuda | cuda:N (default: cuda if present)")
    add_option(p, "--base-url", help="openai backend: server URL (else ICALIGN_BASE_URL)")
    add_option(p, "--api-key", help="openai backend: key (else ICALIGN_API_KEY; never saved)")
    add_option(p, "--served-model", help="openai backend: model name on the server")
    add_option(p, "--concurrency", type=positive_int, help="openai backend: requests in flight (8)")
    add_option(p, "--max-retries", type=int, help="openai backend: retries on 429/5xx/timeouts (6)")
    add_option(p, "--tensor-parallel-size", type=positive_int, help="vllm backend: GPUs per model (1)")
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
    from ..generation.runs import run_generation

    s = run_generation(args.run, run_spec(args), run_options(args))
    how = ", ".join(f"{k} {v}" for k, v in sorted(s.stopped_by.items())) or "-"
    shrunk = "" if s.shrunk is None else f"; demo budget shrunk to fit the context: {s.shrunk} queries"
    print(
        f"run {s.run_dir}: {s.generated} generated, {s.already_done} already done, {s.total} items "
        f"(stopped by: {how}{shrunk}; {s.seconds:.1f}s)"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """A finished run in another tool's format."""
    from ..generation.export import export_run
    from ..generation.rundir import CONFIG, GENERATIONS, check_output

    check_output(args.out, [Path(args.run) / CONFIG, Path(args.run) / GENERATIONS])
    n = export_run(args.run, args.format, args.out, generator=args.generator, sample=args.sample)
    print(f"wrote {n} queries to {args.out} ({args.format})")
    return 0
