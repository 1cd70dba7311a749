"""`icalign bench retrieval` and `icalign bench generation`: the package's paths against
reference-style ones, side by side in one process; the last line is `speedup: X.XXx`. `icalign bench
precision`: what bf16 and int8 weights change in logits and greedy answers, against float32."""

from __future__ import annotations

import argparse

from .common import (
    add_decoding_options,
    add_generation_options,
    add_model_option,
    add_retrieval_options,
    run_spec,
)


def add_commands(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register `bench retrieval`, `bench generation` and `bench precision`."""
    group = sub.add_parser("bench", help="benchmarks against a reference-style baseline")
    kinds = group.add_subparsers(dest="what", required=True)

    p = kinds.add_parser(
        "retrieval", parents=[parent], help="embed, encode, select and pack: 300 LIMA queries"
    )
    add_retrieval_options(p)
    p.set_defaults(pool="alpaca", eval="lima-test", limit=300, func=cmd_retrieval)

    p = kinds.add_parser("generation", parents=[parent], help="decode paper-preset prompts both ways")
    add_model_option(p)
    add_retrieval_options(p)
    add_generation_options(p)
    add_decoding_options(p, "package path: most rows decoded together")
    p.add_argument(
        "--peer",
        choices=["llama-cpp"],
        help="also time llama.cpp on the same GGUF at batch 1 (needs llama-cpp-python, built from source)",
    )
    p.set_defaults(limit=4, max_new_tokens=512, func=cmd_generation)

    p = kinds.add_parser(
        "precision", parents=[parent], help="bf16, int8 and int4 logits and greedy answers against float32"
    )
    add_model_option(p)
    add_retrieval_options(p)
    add_generation_options(p)
    p.add_argument(
        "--dtypes",
        nargs="+",
        default=["bfloat16", "int8", "int4"],
        choices=["bfloat16", "int8", "int4"],
        help="dtypes to compare",
    )
    p.set_defaults(limit=8, samples=1, max_new_tokens=64, func=cmd_precision)


def cmd_retrieval(args: argparse.Namespace) -> int:
    """Time retrieval both ways."""
    from ..jobs.bench import bench_retrieval
    from .common import retrieval_settings

    bench_retrieval(retrieval_settings(args), args.data_dir)
    return 0


def cmd_precision(args: argparse.Namespace) -> int:
    """Compare dtypes' logits and greedy answers."""
    from ..jobs.bench import bench_precision

    bench_precision(run_spec(args), args.dtypes, args.data_dir)
    return 0


def cmd_generation(args: argparse.Namespace) -> int:
    """Time generation both ways."""
    from ..jobs.bench import bench_generation

    bench_generation(
        run_spec(args), args.batch_size, args.data_dir, token_budget=args.batch_budget, peer=args.peer
    )
    return 0
