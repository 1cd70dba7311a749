"""`icalign winrate`, `compare`, `paper-table`, `judge-agreement` and `leakage`: tables from verdicts and
runs. Only `judge-agreement` may load a model (the fitted and embedding judges' encoder)."""

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
    """Register `winrate`, `compare`, `paper-table`, `judge-agreement` and `leakage`."""
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
        "judge-agreement",
        parents=[parent],
        help="a judge's agreement with GPT-4's verdicts (the release's, or AlpacaEval annotations)",
    )
    p.add_argument(
        "--release",
        default=None,
        help="folder of release files (default, without --annotations: the paper's release, pinned)",
    )
    p.add_argument(
        "--annotations",
        nargs="+",
        default=None,
        help="AlpacaEval annotation files: GPT-4's verdicts on output_2 (the system) vs output_1",
    )
    p.add_argument("--baseline", default="davinci003", help="release baseline (davinci003, chatgpt)")
    p.add_argument("--systems", default=None, help="comma-separated system ids (default: all)")
    p.add_argument(
        "--prompts", type=positive_int, default=None, help="only the first N LIMA prompts (default: all 300)"
    )
    p.add_argument(
        "--judgments", default=None, help="instead of judging: a judgments file or run dir to compare"
    )
    p.add_argument(
        "--out-of-fit",
        action="store_true",
        help="fitted judge: refit on these verdicts, each system left out and prompts in 5 folds, and judge "
        "each comparison with a model that saw neither its system nor its prompt",
    )
    add_judge_options(p)
    add_stats_options(p)
    p.set_defaults(func=cmd_judge_agreement)

    p = sub.add_parser(
        "leakage", parents=[parent], help="demos that are near-duplicates of their query (pool/eval leakage)"
    )
    p.add_argument("runs", nargs="*", help="run directories (their kept demos)")
    p.add_argument("--pool", default=None, help="instead: a whole pool (built-in name or file) ...")
    p.add_argument("--eval", default=None, help="... against an eval set (built-in name or file)")
    p.add_argument("--out", default=None, help="with --pool/--eval: write the pool without its leaking demos")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format")
    p.set_defaults(func=cmd_leakage)


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
    """A judge's agreement with GPT-4's verdicts per system, with CIs (JSON: one object per system)."""
    import polars as pl

    from ..analysis.agreement import (
        AGREEMENT_JSON_KEYS,
        agreement_on_labelled,
        agreement_table,
        judge_agreement,
    )
    from ..analysis.judge_validation import RELEASE_REFERENCE, in_fit_note, out_of_fit_agreement
    from ..data.release import (
        beside,
        load_release_outputs,
        outputs_name,
        release_judgment_files,
        release_names,
    )
    from ..errors import UserError
    from ..judging.labelled import annotations_labelled, release_labelled
    from ..judging.verdicts import check_for_answers, load_release_verdicts, load_verdicts

    wanted = set(args.systems.split(",")) if args.systems else None
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    items, files = [], []
    if args.release is not None or not args.annotations:
        files = [
            f
            for f in release_judgment_files(args.release, args.data_dir)
            if release_names(f)[1] == args.baseline and (wanted is None or release_names(f)[0] in wanted)
        ]
        if not files:
            raise UserError(
                f"no release judgment files for baseline '{args.baseline}' and the systems asked for"
            )
        if args.judgments:
            if len(files) != 1 or args.annotations:
                raise UserError("--judgments: name the one release system they judged with --systems")
            judged, (system, _) = load_verdicts(args.judgments), release_names(files[0])
            outputs = load_release_outputs(beside(files[0], outputs_name(system), args.data_dir))
            check_for_answers(judged, outputs, f"the release's {system} answers")
            row = judge_agreement(judged, load_release_verdicts(files[0]), bootstrap(args))
            _print_agreement(agreement_table([row]), args.format, AGREEMENT_JSON_KEYS)
            return 0
        # --reference names the annotations' reference when there are annotations, else the release's
        release_reference = RELEASE_REFERENCE if args.annotations else (args.reference or RELEASE_REFERENCE)
        keep = None if args.prompts is None else {f"lima-{i:03d}" for i in range(args.prompts)}
        items += [
            x
            for x in release_labelled(files, release_reference, args.data_dir)
            if keep is None or x.query_id in keep
        ]
    notes = [Path(a) for a in args.annotations or []]
    if notes:
        items += [
            x
            for x in annotations_labelled(notes, args.reference, args.data_dir)
            if wanted is None or x.system in wanted
        ]
    if not items:
        raise UserError("no GPT-4 verdicts to compare with (check --systems)")
    judge = judge_run(args, Path("."), args.baseline)
    if args.out_of_fit:
        if judge.judge.kind != "fitted":
            raise UserError("--out-of-fit refits the fitted judge: use it with --judge fitted")
        table = out_of_fit_agreement(items, bootstrap(args), say)
    else:
        if judge.judge.kind == "fitted":
            note = in_fit_note(judge.judge, [*files, *notes])
            if note:
                say(note)
        _, table = agreement_on_labelled(items, judge, bootstrap(args), say)
    _print_agreement(table.sort(pl.col("system")), args.format, AGREEMENT_JSON_KEYS)
    return 0


def _print_agreement(table: object, fmt: str, keys: list[str]) -> None:
    """The agreement table: JSON objects lead with `keys`; text shows the columns people read."""
    extra = ["baseline", "judge", "ci_low", "ci_high", "draw_judge", "draw_reference"]
    if fmt == "json":
        _print(table, "json", [*keys, *[c for c in extra if c in table.columns]])
    elif fmt == "table":
        shown = ["system", "baseline", "n", "decisive", "agreement", "ci_low", "ci_high", "win_judge"]
        _print(table.select([c for c in [*shown, "win_reference", "draw_judge"] if c in table.columns]), fmt)
    else:
        _print(table, fmt)


def cmd_leakage(args: argparse.Namespace) -> int:
    """Demos that near-duplicate their query: per run (kept demos), or a whole pool against an eval set
    (and, with --out, the pool without them)."""
    import polars as pl

    from ..analysis.leakage import leaked_demos, pool_leaks
    from ..data.loaders import load_eval, load_pool, source_path
    from ..errors import UserError
    from ..files import write_jsonl
    from ..generation.rundir import check_output

    if bool(args.pool) != bool(args.eval) or bool(args.runs) == bool(args.pool):
        raise UserError("leakage: name run directories, or --pool and --eval (not both)")
    if args.pool:
        if args.out:
            inputs = [
                source_path(args.pool, "pool", args.data_dir),
                source_path(args.eval, "eval set", args.data_dir),
            ]
            check_output(args.out, inputs)
        pool = load_pool(args.pool, args.data_dir)
        found = {args.pool: pool_leaks(pool, load_eval(args.eval, args.data_dir))}
        if args.out:
            clean = pool.filter(~pl.col("id").is_in(found[args.pool]["demo_id"].unique().to_list()))
            write_jsonl(Path(args.out), clean.select("id", "prompt", "response", "category").to_dicts())
            kept = f"{clean.height} of {pool.height} demos"
            print(f"wrote {args.out}: {kept} (near-duplicates of {args.eval} queries left out)")
    else:
        found = {run: leaked_demos(run, args.data_dir) for run in args.runs}
    table = pl.concat([t.with_columns(pl.lit(Path(name).name).alias("source")) for name, t in found.items()])
    table = table.select("source", "query_id", "sample", "demo_id", "containment", "jaccard", "query")
    if args.format != "table":
        _print(table, args.format)
        return 0
    for name, t in found.items():
        queries = t["query_id"].n_unique()
        print(f"{name}: {t.height} near-duplicate demo(s) of their query, in {queries} query(ies)")
    if table.height:
        _print(table.with_columns(pl.col("query").str.slice(0, 60)), "table")
    return 0
