"""`icalign bench retrieval` and `icalign bench generation`: the package's paths against
reference-style ones, side by side in one process; the last line is `speedup: X.XXx`."""

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
    """Register `bench retrieval` and `bench generation`."""
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
    p.set_defaults(limit=4, max_new_tokens=512, func=cmd_generation)


def cmd_retrieval(args: argparse.Namespace) -> int:
    """Time retrieval both ways."""
    from ..jobs.bench import bench_retrieval
    from .common import retrieval_settings

    bench_retrieval(retrieval_settings(args), args.data_dir)
    return 0


def cmd_generation(args: argparse.Namespace) -> int:
    """Time generation both ways."""
    from ..jobs.bench import bench_generation

    bench_generation(run_spec(args), args.batch_size, args.data_dir, token_budget=args.batch_budget)
    return 0
