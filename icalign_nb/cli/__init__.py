"""The `icalign` command: one module per command group; argument parsing stays in this folder."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import UserError
from . import analysis, bench, data, generation, judging, notebooks, retrieval
from .common import shared_parent

GROUPS = (data, retrieval, generation, judging, analysis, notebooks, bench)  # in the order data flows


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(
        prog="icalign",
        description="In-context alignment: retrieval, generation, judging, win rates, notebooks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    parent = shared_parent()
    for group in GROUPS:
        group.add_commands(sub, parent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: a user mistake prints one line and exits 1 (usage errors: 2, from argparse)."""
    from ..cache import CACHE_ENV

    # OpenMP threads that spin while they wait steal the cores of a shared machine: with another busy
    # process on a 2-core machine, prefill ran 3-5x and decode 1.5-1.8x slower than with sleeping waits
    # (which cost nothing measurable on a quiet machine). A default only, set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    before = os.environ.get(CACHE_ENV)
    if getattr(args, "cache_dir", None):
        os.environ[CACHE_ENV] = str(os.path.abspath(os.path.expanduser(args.cache_dir)))
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"icalign: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a file size limit, a permission: the system's own words
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"icalign: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "icalign: interrupted (finished work is kept; re-run the same command to resume)", file=sys.stderr
        )
        return 130
    finally:  # --cache-dir is this call's setting, not the calling process's (a notebook, a test)
        if before is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = before
