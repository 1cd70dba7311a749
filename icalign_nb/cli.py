"""The `icalign` command: pipeline steps, benchmarks and notebook runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .errors import UserError

Handler = Callable[[argparse.Namespace], int | None]


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help="local folder with the public data layout (else ICALIGN_DATA_DIR, else fetch)",
    )


def _cmd_retrieve(args: argparse.Namespace) -> int:
    from .pipeline import run_retrieve

    run_retrieve(args)
    return 0


BENCH_DEFAULTS = {
    "retrieval": {"pool": "alpaca", "eval": "lima-test", "queries": 300},
    "generation": {"pool": "starter", "eval": "starter", "queries": 4},
}


def _cmd_bench(args: argparse.Namespace) -> int:
    for key, value in BENCH_DEFAULTS.get(args.what, {}).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.what == "retrieval":
        from .bench import bench_retrieval

        return bench_retrieval(args)
    if args.what == "generation":
        from .bench import bench_generation

        return bench_generation(args)
    raise UserError(f"unknown benchmark '{args.what}' (retrieval, generation)")


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from .notebooks import cmd_notebooks

    return cmd_notebooks(args)


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(prog="icalign", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("retrieve", help="retrieve and pack demonstrations; one JSON line per query")
    p.add_argument("--pool", default="starter", help="built-in pool name or a file (.jsonl/.json/.parquet)")
    p.add_argument("--eval", default="starter", help="built-in eval set name or a file")
    p.add_argument(
        "--preset", default="paper", help="paper | paper-short | paper-cosine | random | zero-shot | urial"
    )
    p.add_argument("--encoder", default=None, help="minilm (default) | contriever | HF id | folder")
    p.add_argument("--tokenizer", default=None, help="model name whose tokenizer counts demo tokens")
    p.add_argument("--urial-prompt", default=None, help="URIAL prompt file for the urial preset")
    p.add_argument("--fields", default=None, help="field mapping for plain files: prompt=NAME,response=NAME")
    p.add_argument("--limit", type=int, default=None, help="only the first N queries")
    p.add_argument("--seed", type=int, default=0, help="seed of the random preset")
    p.add_argument("--max-k", type=int, default=None, help="candidates considered (paper: 20)")
    p.add_argument("--max-tokens", type=int, default=None, help="demo token budget (paper: 3000)")
    p.add_argument("--max-demo-tokens", type=int, default=None, help="per-demo token limit (paper: 500)")
    p.add_argument("--similarity", default=None, choices=["dot", "cosine"], help="score (paper: dot)")
    p.add_argument("--out", required=True, help="output .jsonl file (written atomically)")
    _data_dir_option(p)
    p.set_defaults(func=_cmd_retrieve)

    p = sub.add_parser("bench", help="benchmarks against a reference-style baseline")
    p.add_argument("what", choices=["retrieval", "generation"])
    p.add_argument("--pool", default=None, help="demo pool (retrieval: alpaca, generation: starter)")
    p.add_argument("--eval", default=None, help="queries (retrieval: lima-test, generation: starter)")
    p.add_argument("--queries", type=int, default=None, help="queries (retrieval: 300, generation: 4)")
    p.add_argument("--encoder", default=None, help="encoder (default minilm)")
    p.add_argument("--tokenizer", default=None, help="tokenizer for demo lengths")
    p.add_argument("--model", default="smollm2-135m", help="model for the generation benchmark")
    p.add_argument("--max-new-tokens", type=int, default=512, help="generation benchmark: new-token cap")
    p.add_argument("--batch-size", type=int, default=8, help="generation benchmark: package batch size")
    p.add_argument(
        "--samples", type=int, default=5, help="generation benchmark: samples per query (paper: 5)"
    )
    _data_dir_option(p)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "notebooks",
        help="run the notebooks with papermill (executed records in runs/notebooks/, figures in figures/)",
    )
    p.add_argument("action", choices=["run", "list"], help="run: execute; list: names and parameters")
    p.add_argument("names", nargs="*", help="notebooks by name, number or name part (default: all)")
    p.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        help="set a notebook parameter (repeatable), e.g. -p model llama-2-13b",
    )
    p.add_argument("--notebook-dir", default=None, help="folder of the notebooks (default: notebooks/)")
    p.add_argument("--figures-dir", default=None, help="where figures are written (default: figures/)")
    p.add_argument("--runs-dir", default=None, help="where run folders go (default: runs/notebooks/)")
    p.add_argument("--work-dir", default=None, help="generations/judgments shared by notebooks (runs/work/)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: this environment's)")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    p.set_defaults(func=_cmd_notebooks)

    # --- further subcommands register here (generation, judging, analysis, notebooks) ---
    from .generation_cli import add_generation_commands

    add_generation_commands(sub, _data_dir_option)
    from .judging_cli import add_judging_commands

    add_judging_commands(sub, _data_dir_option)
    return parser


def quiet_libraries() -> None:
    """Hide per-file weight-loading bars of transformers; the command prints its own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user mistakes print one line to stderr and exit 2."""
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"icalign: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "icalign: interrupted (finished work is kept; re-run the same command to resume)", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
