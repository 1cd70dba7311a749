"""`icalign retrieve`: retrieve and pack demonstrations, one JSON line per query."""

from __future__ import annotations

import argparse

from .common import add_retrieval_options, add_seed_option, retrieval_settings


def add_commands(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register `retrieve`."""
    p = sub.add_parser(
        "retrieve", parents=[parent], help="retrieve and pack demonstrations; one JSON line per query"
    )
    add_retrieval_options(p)
    add_seed_option(p, "the random preset's draws")
    p.add_argument("--out", required=True, help="output .jsonl file (written atomically)")
    p.set_defaults(func=cmd_retrieve)


def cmd_retrieve(args: argparse.Namespace) -> int:
    """Retrieve for every query and write the records."""
    from ..data.loaders import source_path
    from ..files import write_jsonl
    from ..generation.rundir import check_output
    from ..retrieval.settings import build_retriever, load_queries

    settings = retrieval_settings(args)
    settings.config()  # bad settings fail before anything loads
    inputs = [
        source_path(settings.pool, "pool", args.data_dir),
        source_path(settings.eval, "eval set", args.data_dir),
    ]
    check_output(args.out, [*inputs, settings.urial_prompt])
    results = build_retriever(settings, args.data_dir).retrieve(load_queries(settings, args.data_dir))
    write_jsonl(args.out, [r.to_json() for r in results])
    mean = sum(len(r.demo_ids) for r in results) / len(results) if results else 0.0
    print(f"wrote {len(results)} retrievals to {args.out} (mean demos kept: {mean:.1f})")
    return 0
