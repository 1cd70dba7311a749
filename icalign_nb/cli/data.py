"""`icalign data fetch`: the public reference data (the paper's release, AlpacaEval, Alpaca, URIAL,
the judge prompt) from pinned URLs, checked against pinned sha256, into the cache."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register `data fetch`."""
    group = sub.add_parser(
        "data", help="the public reference data: fetch it (pinned, checked) into the cache"
    )
    actions = group.add_subparsers(dest="action", required=True)
    p = actions.add_parser(
        "fetch",
        parents=[parent],
        help="download pinned files into the cache (with --data-dir: check a local copy against the pins)",
    )
    p.add_argument(
        "names",
        nargs="*",
        help="files or folders (paper_release, alpaca_eval, alpaca, urial, judge, paper_resources); "
        "default: all",
    )
    p.set_defaults(func=cmd_fetch)


def cmd_fetch(args: argparse.Namespace) -> int:
    """One line per file; exit 1 when any file is missing, broken or could not be downloaded."""
    from ..data.fetch import cache_data_dir, data_root, fetch_files
    from ..errors import UserError

    root = data_root(args.data_dir)
    where = f"checking {root} against the pins" if root else f"fetching into {cache_data_dir()}"
    print(where)
    checks = []
    for check in fetch_files(args.names, args.data_dir):
        checks.append(check)
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.relpath}: {check.message}")
    failed = [c for c in checks if not c.ok]
    if failed:
        hint = (
            ""
            if root
            else "; offline? copy the files into a folder and pass --data-dir (or ICALIGN_DATA_DIR)"
        )
        raise UserError(f"{len(failed)} of {len(checks)} file(s) not ready{hint}")
    print(f"all {len(checks)} file(s) ready")
    return 0
