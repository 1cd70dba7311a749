"""`icalign judge`: judge a run's answers against a baseline into DIR/judgments.jsonl."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .common import add_option, positive_int, settings_from

if TYPE_CHECKING:
    from ..judging.run import JudgeRun


def add_judge_options(p: argparse.ArgumentParser) -> None:
    """Which judge, and how it is asked."""
    add_option(p, "--judge", help="paper | openai:MODEL | local:MODEL | embedding[:ENCODER] | recorded:FILE")
    add_option(p, "--prompt", choices=["paper", "default"], help="judge prompt of LLM judges")
    add_option(p, "--base-url", help="OpenAI-compatible endpoint (else OPENAI_BASE_URL)")
    add_option(p, "--temperature", type=float, help="judge sampling temperature")
    add_option(p, "--max-tokens", type=positive_int, help="judge reply token cap")
    add_option(p, "--margin", type=float, help="draw margin on the score difference")
    add_option(p, "--device", help="local judge device: cpu | cuda")
    add_option(p, "--concurrency", type=positive_int, help="parallel requests to an endpoint (8)")
    add_option(p, "--max-retries", type=int, help="endpoint judges: retries per request (6)")
    add_option(p, "--timeout", type=float, help="endpoint judges: seconds per request (120)")
    add_option(
        p,
        "--reference",
        help="embedding judge references: a baseline name/file or eval:NAME (default: the run's eval set)",
    )


def judge_run(args: argparse.Namespace, run_dir: Path, baseline: str) -> JudgeRun:
    """The judging the options describe, for one run directory (or the release, with Path('.'))."""
    from ..judging.run import JudgeRun
    from ..judging.spec import DEFAULT_JUDGE, parse_judge_spec

    spec = parse_judge_spec(
        args.judge or DEFAULT_JUDGE,
        prompt=args.prompt,
        base_url=args.base_url,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        margin=args.margin,
        device=args.device,
    )
    return settings_from(
        JudgeRun,
        args,
        run_dir=run_dir,
        baseline=baseline,
        judge=spec,
        swap=getattr(args, "swap", False),
        out=Path(args.out) if getattr(args, "out", None) else None,
        progress=not getattr(args, "no_progress", True),
    )


def add_commands(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Register `judge`."""
    p = sub.add_parser(
        "judge", parents=[parent], help="judge a run's answers against a baseline; writes DIR/judgments.jsonl"
    )
    p.add_argument("--run", required=True, help="run directory with generations.jsonl")
    p.add_argument(
        "--baseline", required=True, help="built-in baseline name (davinci003, chatgpt, ...) or a file"
    )
    add_judge_options(p)
    p.add_argument(
        "--swap",
        action="store_true",
        help="judge both orders; agreeing orders keep their verdict, disagreeing ones count as a draw",
    )
    p.add_argument("--out", default=None, help="judgments file (default DIR/judgments.jsonl)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_judge)


def cmd_judge(args: argparse.Namespace) -> int:
    """Judge a run, write its judgments, print the counts (and the position-swap agreement)."""
    from ..analysis.winrates import swap_agreement
    from ..judging.run import print_summary, run_judge

    summary = run_judge(judge_run(args, Path(args.run), args.baseline))
    print_summary(summary)
    if args.swap:
        for row in swap_agreement(summary.frame(Path(args.run).name)).iter_rows(named=True):
            print(
                f"position swap: the two orders agree on {row['agree']}/{row['pairs']} "
                f"({row['agreement']:.1%}); disagreements count as draws"
            )
    return 0
