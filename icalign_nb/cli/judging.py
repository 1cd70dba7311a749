"""`icalign judge`: judge a run's answers against a baseline into DIR/judgments.jsonl."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import positive_int


def add_judge_options(p: argparse.ArgumentParser, default: str = "embedding") -> None:
    """Which judge, and how it is asked."""
    p.add_argument(
        "--judge",
        default=default,
        help="paper | openai:MODEL | local:MODEL | embedding[:ENCODER] | recorded:FILE",
    )
    p.add_argument("--prompt", default=None, choices=["paper", "default"], help="judge prompt of LLM judges")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (else OPENAI_BASE_URL)")
    p.add_argument("--temperature", type=float, default=None, help="judge sampling temperature")
    p.add_argument("--max-tokens", type=positive_int, default=None, help="judge reply token cap")
    p.add_argument("--margin", type=float, default=None, help="draw margin on the score difference")
    p.add_argument("--device", default=None, help="local judge device: cpu | cuda")
    p.add_argument("--concurrency", type=positive_int, default=8, help="parallel requests to an endpoint")
    p.add_argument("--max-retries", type=int, default=6, help="endpoint judges: retries per request")
    p.add_argument("--timeout", type=float, default=120.0, help="endpoint judges: seconds per request")
    p.add_argument(
        "--reference",
        default=None,
        help="embedding judge references: a baseline name/file or eval:NAME (default: the run's eval set)",
    )


def judge_run(args: argparse.Namespace, run_dir: Path, baseline: str) -> object:
    """The judging the options describe, for one run directory (or the release, with Path('.'))."""
    from ..judging.run import JudgeRun
    from ..judging.spec import parse_judge_spec

    spec = parse_judge_spec(
        args.judge,
        prompt=args.prompt,
        base_url=args.base_url,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        margin=args.margin,
        device=args.device,
    )
    return JudgeRun(
        run_dir=run_dir,
        baseline=baseline,
        judge=spec,
        swap=getattr(args, "swap", False),
        concurrency=args.concurrency,
        reference=args.reference,
        out=Path(args.out) if getattr(args, "out", None) else None,
        data_dir=args.data_dir,
        max_retries=args.max_retries,
        timeout=args.timeout,
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
    from ..judging.verdicts import load_verdicts

    summary = run_judge(judge_run(args, Path(args.run), args.baseline))
    print_summary(summary)
    if args.swap:
        for row in swap_agreement(load_verdicts(summary.out)).iter_rows(named=True):
            print(
                f"position swap: the two orders agree on {row['agree']}/{row['pairs']} "
                f"({row['agreement']:.1%}); disagreements count as draws"
            )
    return 0
