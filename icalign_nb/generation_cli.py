"""The `generate` and `export` subcommands: thin handlers over `icalign_nb.runs`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .generate import BACKENDS, GenerationConfig


def add_generation_commands(sub: argparse._SubParsersAction, data_dir_option: Callable) -> None:
    """Register `icalign generate` and `icalign export`."""
    p = sub.add_parser("generate", help="generate answers into a resumable run directory")
    p.add_argument("--run", required=True, help="run directory (created; re-run the same command to resume)")
    p.add_argument("--model", default="smollm2-135m", help="registered name, Hugging Face id or local folder")
    p.add_argument("--backend", default="transformers", choices=BACKENDS, help="generation backend")
    p.add_argument("--pool", default="starter", help="demonstration pool (built-in name or file)")
    p.add_argument("--eval", default="starter", help="evaluation queries (built-in name or file)")
    p.add_argument(
        "--preset", default="paper", help="paper | paper-short | paper-cosine | random | zero-shot | urial"
    )
    p.add_argument("--encoder", default="minilm", help="retrieval encoder (minilm, contriever, HF id)")
    p.add_argument(
        "--tokenizer", default=None, help="model whose tokenizer counts prompt tokens (default: --model)"
    )
    p.add_argument("--urial-prompt", default=None, help="URIAL prompt file for the urial preset")
    p.add_argument("--fields", default=None, help="field mapping for plain files: prompt=NAME,response=NAME")
    p.add_argument("--samples", type=int, default=5, help="samples per query (paper: 5)")
    p.add_argument("--max-new-tokens", type=int, default=1000, help="new-token cap (paper: 1000)")
    p.add_argument(
        "--temperature", type=float, default=0.7, help="sampling temperature; 0 = greedy (paper: 0.7)"
    )
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus filter (paper: 1.0)")
    p.add_argument(
        "--top-k", type=int, default=50, help="top-k filter, 0 = off (paper: transformers' default 50)"
    )
    p.add_argument(
        "--batch-size", type=int, default=8, help="prompts per batch (server backends: per saved chunk)"
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N queries")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (and of the random preset)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if present)")
    p.add_argument("--base-url", default=None, help="openai backend: server URL (else ICALIGN_BASE_URL)")
    p.add_argument("--api-key", default=None, help="openai backend: key (else ICALIGN_API_KEY; never saved)")
    p.add_argument("--served-model", default=None, help="openai backend: model name on the server")
    p.add_argument("--concurrency", type=int, default=8, help="openai backend: requests in flight")
    p.add_argument("--max-retries", type=int, default=6, help="openai backend: retries on 429/5xx/timeouts")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm backend: GPUs per model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    data_dir_option(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("export", help="export a run in the paper's or AlpacaEval's format")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--format", required=True, choices=["paper", "alpaca_eval"], help="output format")
    p.add_argument("--out", required=True, help="output file (.jsonl for paper, .json for alpaca_eval)")
    p.add_argument("--generator", default=None, help="alpaca_eval: generator name (default model_preset)")
    p.add_argument("--sample", type=int, default=0, help="alpaca_eval: which sample per query")
    p.set_defaults(func=cmd_export)


def cmd_generate(args: argparse.Namespace) -> int:
    """`icalign generate`: fill a run directory, resuming what is there."""
    from .runs import RunOptions, RunSpec, run_generation

    spec = RunSpec(
        model=args.model,
        backend=args.backend,
        pool=args.pool,
        eval=args.eval,
        preset=args.preset,
        encoder=args.encoder,
        tokenizer=args.tokenizer,
        urial_prompt=args.urial_prompt,
        fields=args.fields,
        limit=args.limit,
        served_model=args.served_model,
        generation=GenerationConfig(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k or None,
            samples=args.samples,
            seed=args.seed,
        ),
    )
    options = RunOptions(
        batch_size=args.batch_size,
        device=args.device,
        base_url=args.base_url,
        api_key=args.api_key,
        concurrency=args.concurrency,
        max_retries=args.max_retries,
        tensor_parallel_size=args.tensor_parallel_size,
        data_dir=args.data_dir,
        progress=not args.no_progress,
    )
    s = run_generation(args.run, spec, options)
    how = ", ".join(f"{k} {v}" for k, v in sorted(s.stopped_by.items())) or "-"
    print(
        f"run {s.run_dir}: {s.generated} generated, {s.already_done} already done, {s.total} items "
        f"(stopped by: {how}; {s.seconds:.1f}s)"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`icalign export`: a finished run in another tool's format."""
    from .runs import export_run

    n = export_run(args.run, args.format, args.out, generator=args.generator, sample=args.sample)
    print(f"wrote {n} queries to {args.out} ({args.format})")
    return 0
