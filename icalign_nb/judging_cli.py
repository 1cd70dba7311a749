"""The judging and analysis subcommands: `judge`, `winrate`, `paper-table`, `judge-agreement`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .analysis import WINRATE_COLUMNS

# The JSON contract of `icalign winrate`: the table's columns without `judge` (named in `system`).
WINRATE_JSON_KEYS = [c for c in WINRATE_COLUMNS if c != "judge"]


def _judge_options(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--judge",
        default=default,
        help="paper | openai:MODEL | local:MODEL | embedding[:ENCODER] | recorded:FILE",
    )
    p.add_argument("--prompt", default=None, help="judge prompt of LLM judges: paper | default")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (else OPENAI_BASE_URL)")
    p.add_argument("--temperature", type=float, default=None, help="judge sampling temperature")
    p.add_argument("--max-tokens", type=int, default=None, help="judge reply token cap")
    p.add_argument("--margin", type=float, default=None, help="draw margin on the score difference")
    p.add_argument("--device", default=None, help="local judge device: cpu | cuda")
    p.add_argument("--concurrency", type=int, default=8, help="parallel requests to an endpoint")
    p.add_argument("--cache-dir", default=None, help="judgment cache root (default: the user cache)")


def _spec(args: argparse.Namespace) -> object:
    from .judges.spec import parse_judge_spec

    return parse_judge_spec(
        args.judge,
        prompt=args.prompt,
        base_url=args.base_url,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        margin=args.margin,
        device=args.device,
    )


def _boot(args: argparse.Namespace) -> object:
    from .analysis import Bootstrap

    return Bootstrap(n=args.bootstrap, seed=args.seed)


def cmd_judge(args: argparse.Namespace) -> int:
    """`icalign judge`: judge a run against a baseline, write DIR/judgments.jsonl."""
    from .judge import JudgeRun, print_summary, run_judge

    run = JudgeRun(
        run_dir=Path(args.run),
        baseline=args.baseline,
        judge=_spec(args),
        swap=args.swap,
        concurrency=args.concurrency,
        reference=args.reference,
        out=Path(args.out) if args.out else None,
        cache_root=Path(args.cache_dir) if args.cache_dir else None,
        data_dir=args.data_dir,
    )
    print_summary(run_judge(run))
    return 0


def _label_proxies(table: object) -> object:
    """JSON keeps the issue's keys: a proxy judge's name goes into the `system` value."""
    import polars as pl

    return table.with_columns(
        pl.when(pl.col("judge").str.ends_with("(proxy judge)"))
        .then(pl.format("{} [{}]", pl.col("system"), pl.col("judge")))
        .otherwise(pl.col("system"))
        .alias("system")
    )


def cmd_winrate(args: argparse.Namespace) -> int:
    """`icalign winrate`: win/draw/lose with a prompt-bootstrap CI per system."""
    from .analysis import win_rates
    from .judgments import load_many
    from .report import render

    table = win_rates(load_many(args.inputs), _boot(args))
    if args.format == "json":
        print(render(_label_proxies(table), "json", WINRATE_JSON_KEYS))
    else:
        print(render(table, args.format), end="" if args.format == "csv" else "\n")
    return 0


def cmd_paper_table(args: argparse.Namespace) -> int:
    """`icalign paper-table`: the release's judgments recomputed beside the paper's numbers."""
    from .paper import REPORTED_SOURCE, paper_table
    from .report import render

    table = paper_table(args.release, args.data_dir, _boot(args))
    columns = [
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
    if args.format == "table":
        print(render(table.select(columns), "table"))
        print(f"reported_win: {REPORTED_SOURCE}; judge: GPT-4-0613 replies recorded in the release")
    else:
        print(render(table, args.format), end="" if args.format == "csv" else "\n")
    return 0


def cmd_judge_agreement(args: argparse.Namespace) -> int:
    """`icalign judge-agreement`: a judge's agreement with the release's GPT-4 verdicts, with a CI."""
    from .agreement import agreement_table, judge_agreement
    from .errors import UserError
    from .judge import JudgeRun, judgment_rows_frame, make_backend
    from .judges.cache import JudgmentCache
    from .judgments import load_release_verdicts, load_verdicts, release_names
    from .release import release_comparisons, release_judgment_files
    from .report import render

    files = release_judgment_files(args.release, args.data_dir)
    files = [f for f in files if release_names(f)[1] == args.baseline]
    if args.systems:
        wanted = set(args.systems.split(","))
        files = [f for f in files if release_names(f)[0] in wanted]
    if not files:
        raise UserError(f"no release judgment files for baseline '{args.baseline}' and the systems asked for")
    rows = []
    if args.judgments:
        if len(files) != 1:
            raise UserError("--judgments: name the one release system they judged with --systems")
        judged = load_verdicts(args.judgments)
        rows.append(judge_agreement(judged, load_release_verdicts(files[0]), _boot(args)))
    else:
        spec = _spec(args)
        run = JudgeRun(
            Path("."),
            args.baseline,
            spec,
            concurrency=args.concurrency,
            reference=args.reference,
            cache_root=Path(args.cache_dir) if args.cache_dir else None,
            data_dir=args.data_dir,
        )
        backend = make_backend(run)
        cache = JudgmentCache(spec.key, run.cache_root)
        for f in files:
            system, _ = release_names(f)
            comparisons = release_comparisons(
                f, args.reference if spec.kind == "embedding" else None, args.release, args.data_dir
            )
            judged = judgment_rows_frame(comparisons, backend, cache, spec, system, args.baseline)
            rows.append(judge_agreement(judged, load_release_verdicts(f), _boot(args)))
            print(f"judged {system} vs {args.baseline}: {len(comparisons)} comparisons", file=sys.stderr)
    print(render(agreement_table(rows), args.format), end="" if args.format == "csv" else "\n")
    return 0


def add_judging_commands(
    sub: argparse._SubParsersAction, data_dir_option: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register `judge`, `winrate`, `paper-table` and `judge-agreement`."""
    p = sub.add_parser("judge", help="judge a run's answers against a baseline; writes DIR/judgments.jsonl")
    p.add_argument("--run", required=True, help="run directory with generations.jsonl")
    p.add_argument(
        "--baseline", required=True, help="built-in baseline name (davinci003, chatgpt, ...) or a file"
    )
    _judge_options(p, "embedding")
    p.add_argument(
        "--reference",
        default=None,
        help="embedding judge references: a baseline name/file or eval:NAME (default: the run's eval set)",
    )
    p.add_argument(
        "--swap",
        action="store_true",
        help="judge both orders; agreeing orders keep their verdict, disagreeing ones count as a draw",
    )
    p.add_argument("--out", default=None, help="judgments file (default DIR/judgments.jsonl)")
    data_dir_option(p)
    p.set_defaults(func=cmd_judge)

    def stats(q: argparse.ArgumentParser, fmt: bool = True) -> None:
        q.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of prompts")
        q.add_argument("--seed", type=int, default=0, help="bootstrap seed")
        if fmt:
            q.add_argument("--format", choices=["table", "json", "csv"], default="table")

    p = sub.add_parser("winrate", help="win/draw/lose per system with a prompt-bootstrap 95%% CI")
    p.add_argument("inputs", nargs="+", help="run directories, judgments files or release *_autoeval.jsonl")
    stats(p)
    p.set_defaults(func=cmd_winrate)

    p = sub.add_parser("paper-table", help="the paper's table recomputed from the release's judgments")
    p.add_argument("--release", default=None, help="folder of release files (default: fetch, pinned)")
    stats(p)
    data_dir_option(p)
    p.set_defaults(func=cmd_paper_table)

    p = sub.add_parser("judge-agreement", help="a judge's agreement with the release's GPT-4 verdicts")
    p.add_argument("--release", default=None, help="folder of release files (default: fetch, pinned)")
    p.add_argument("--baseline", default="davinci003", help="release baseline: davinci003 | chatgpt")
    p.add_argument("--systems", default=None, help="comma-separated release systems (default: all)")
    p.add_argument("--reference", default="chatgpt", help="release answers the embedding judge compares to")
    p.add_argument(
        "--judgments", default=None, help="instead of judging: a judgments file or run dir to compare"
    )
    _judge_options(p, "embedding")
    stats(p)
    data_dir_option(p)
    p.set_defaults(func=cmd_judge_agreement)
