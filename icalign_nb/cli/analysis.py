"""`icalign winrate`, `compare`, `paper-table` and `judge-agreement`: tables from verdicts. These
commands load no model (neither torch nor transformers is imported)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import add_stats_options, bootstrap, positive_int
from .judging import add_judge_options, judge_run

if TYPE_CHECKING:
    import polars as pl

PAPER_TABLE_COLUMNS = [
    "label",
    "vs",
    "n",
    "win",
    "reported_win",
    "ci_low",
    "ci_high",
    "draw",
    "lose",
    "mean_score_system",
    "mean_score_baseline",
    "invalid",
]


def add_commands(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register `winrate`, `compare`, `paper-table` and `judge-agreement`."""
    p = sub.add_parser(
        "winrate", parents=[parent], help="win/draw/lose per system with a prompt-bootstrap 95%% CI"
    )
    p.add_argument("inputs", nargs="+", help="run directories, judgments files or release *_autoeval.jsonl")
    p.add_argument(
        "--length-controlled",
        action="store_true",
        help="also the win rate at equal answer lengths (logistic fit, as AlpacaEval 2)",
    )
    add_stats_options(p)
    p.set_defaults(func=cmd_winrate)

    p = sub.add_parser(
        "compare",
        parents=[parent],
        help="paired difference of two systems' win rates on shared prompts",
    )
    p.add_argument("a", help="system A: a run directory, judgments file or release *_autoeval.jsonl")
    p.add_argument("b", help="system B, likewise")
    add_stats_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "paper-table", parents=[parent], help="the paper's table recomputed from the release's judgments"
    )
    p.add_argument("--release", default=None, help="folder of release files (default: fetch, pinned)")
    add_stats_options(p)
    p.set_defaults(func=cmd_paper_table)

    p = sub.add_parser(
        "judge-agreement", parents=[parent], help="a judge's agreement with the release's GPT-4 verdicts"
    )
    p.add_argument("--release", default=None, help="folder of release files (default: fetch, pinned)")
    p.add_argument(
        "--baseline", default="davinci003", choices=["davinci003", "chatgpt"], help="release baseline"
    )
    p.add_argument("--systems", default=None, help="comma-separated release systems (default: all)")
    p.add_argument(
        "--prompts", type=positive_int, default=None, help="only the first N LIMA prompts (default: all 300)"
    )
    p.add_argument(
        "--judgments", default=None, help="instead of judging: a judgments file or run dir to compare"
    )
    add_judge_options(p)
    p.set_defaults(reference="chatgpt")
    add_stats_options(p)
    p.set_defaults(func=cmd_judge_agreement)


def _print(table: pl.DataFrame, fmt: str, json_columns: list[str] | None = None) -> None:
    from ..analysis.tables import render

    print(render(table, fmt, json_columns), end="" if fmt == "csv" else "\n")


def cmd_winrate(args: argparse.Namespace) -> int:
    """Win/draw/lose with a prompt-bootstrap CI per system (and, asked for, length-controlled)."""
    import polars as pl

    from ..analysis.length import LC_COLUMNS, answer_lengths, with_length_control
    from ..analysis.tables import WINRATE_JSON_KEYS, label_proxies
    from ..analysis.winrates import win_rates
    from ..errors import UserError
    from ..judging.verdicts import load_systems

    systems = load_systems(args.inputs)
    verdicts = pl.concat([s.verdicts for s in systems], how="vertical")
    table = win_rates(verdicts, bootstrap(args))
    empty = table.filter(pl.col("n") == 0)
    if empty.height:
        row = empty.row(0, named=True)
        raise UserError(
            f"no valid comparison for system '{row['system']}' ({row['invalid']} invalid judgments): "
            "there is no win rate to report; look at the raw judge replies"
        )
    keys = WINRATE_JSON_KEYS
    if args.length_controlled:
        lengths = {
            s.name: answer_lengths(s.file, s.baseline[0], args.data_dir, s.baseline[1]) for s in systems
        }
        table, keys = with_length_control(table, verdicts, lengths, bootstrap(args)), [*keys, *LC_COLUMNS]
    if args.format == "json":
        _print(label_proxies(table), "json", keys)
    else:
        _print(table, args.format)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """System A's win rate minus system B's, with a paired bootstrap interval over shared prompts."""
    import polars as pl

    from ..analysis.winrates import paired_comparison
    from ..judging.verdicts import check_same_baseline, load_systems

    a, b = load_systems([args.a, args.b])
    check_same_baseline(a, b)
    result = paired_comparison(a.verdicts, b.verdicts, bootstrap(args))
    _print(pl.DataFrame([result]), args.format)
    return 0


def cmd_paper_table(args: argparse.Namespace) -> int:
    """The release's judgments recomputed beside the paper's numbers."""
    from ..analysis.paper_table import paper_table
    from ..data.release import REPORTED_SOURCE

    table = paper_table(args.release, args.data_dir, bootstrap(args))
    if args.format == "table":
        _print(table.select(PAPER_TABLE_COLUMNS), "table")
        print(f"reported_win: {REPORTED_SOURCE}; judge: GPT-4-0613 replies recorded in the release")
    else:
        _print(table, args.format)
    return 0


def cmd_judge_agreement(args: argparse.Namespace) -> int:
    """A judge's agreement with the release's GPT-4 verdicts, with a CI."""
    from ..analysis.agreement import agreement_on_release, agreement_table, judge_agreement
    from ..data.release import (
        beside,
        load_release_outputs,
        outputs_name,
        release_judgment_files,
        release_names,
    )
    from ..errors import UserError
    from ..judging.verdicts import check_for_answers, load_release_verdicts, load_verdicts

    files = [
        f for f in release_judgment_files(args.release, args.data_dir) if release_names(f)[1] == args.baseline
    ]
    if args.systems:
        wanted = set(args.systems.split(","))
        files = [f for f in files if release_names(f)[0] in wanted]
    if not files:
        raise UserError(f"no release judgment files for baseline '{args.baseline}' and the systems asked for")
    if args.judgments:
        if len(files) != 1:
            raise UserError("--judgments: name the one release system they judged with --systems")
        judged, (system, _) = load_verdicts(args.judgments), release_names(files[0])
        outputs = load_release_outputs(beside(files[0], outputs_name(system), args.data_dir))
        check_for_answers(judged, outputs, f"the release's {system} answers")
        table = agreement_table([judge_agreement(judged, load_release_verdicts(files[0]), bootstrap(args))])
    else:
        judge = judge_run(args, Path("."), args.baseline)
        say = lambda line: print(line, file=sys.stderr)  # noqa: E731
        _, table = agreement_on_release(files, judge, args.release, args.prompts, bootstrap(args), say)
    _print(table, args.format)
    return 0
